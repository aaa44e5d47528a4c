"""Per-paper glue for the shared deployment stages.

A task knows how to read a paper's dataset, which network inputs belong to a split, and how to
score network outputs with the paper's metric. The shared stages (quantization, evaluation) only
see this interface, so they work for every paper.
"""

from __future__ import annotations

import importlib

from medrepro.tasks.base import Task, TaskItems

__all__ = ["Task", "TaskItems", "get_task", "TASKS"]

#: task name -> "module:attribute" of a Task instance
TASKS: dict[str, str] = {
    "cephalometry": "medrepro.tasks.cephalometry:TASK",
    "brain_extraction": "medrepro.tasks.brain_extraction:TASK",
    "cerebellum_yolo": "medrepro.tasks.cerebellum_yolo:TASK",
    "face_landmarks": "medrepro.tasks.face_landmarks:TASK",
}


def get_task(name: str) -> Task:
    """Return the task registered under ``name`` (e.g. ``"cephalometry"``)."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    module, attr = TASKS[name].split(":")
    return getattr(importlib.import_module(module), attr)
