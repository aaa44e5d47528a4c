"""Deployment: export to ONNX / OpenVINO IR, INT8 quantization with NNCF, uniform runtimes.

Submodules import their heavy dependencies (torch, openvino, onnxruntime, nncf) lazily, so that a
benchmark worker can pin its threads before any of them is loaded.
"""

from __future__ import annotations

__all__: list[str] = []
