# Shared helpers: config validation, scale resolution, wildcard constraints, the command that
# every rule runs. No heavy imports here: this code runs again for every cluster job.

import copy
import json
import os
import sys

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

SCALE = config["scale"]
SEED = config["seed"]
THREADS = config["threads"]

# Every rule calls the project's package through its command-line entry point.
MEDREPRO = f"{sys.executable} -m medrepro"

# The papers whose rules are included so far.
PAPERS = ["cephalometry"]


wildcard_constraints:
    paper="|".join(PAPERS),
    model=r"[a-z][a-z0-9_]*",
    split="train|val|test",


def deep_merge(base, override):
    """Return ``base`` updated recursively by ``override`` (neither is modified)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def paper_settings(paper):
    """A paper's config block with its current scale's settings merged in."""
    block = {k: v for k, v in config[paper].items() if k != "scales"}
    return deep_merge(block, config[paper]["scales"][SCALE])


def as_json(obj):
    """Compact JSON for passing structured settings on a command line."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def benchmark_threads():
    """Threads of every benchmarked configuration: the config value, or all cores."""
    return config["benchmark"]["threads"] or os.cpu_count() or 1


def benchmark_mem_limit_mb():
    """Memory bound of one benchmarked process, MB (a share of physical memory)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    return int(total * config["benchmark"]["mem_limit_fraction"])


def model_config(paper, model):
    """Architecture and keyword arguments of ``model`` at the current scale."""
    settings = paper_settings(paper)
    entry = settings["models"][model]
    kwargs = deep_merge(settings["arch_kwargs"].get(entry["arch"], {}), entry["kwargs"])
    return {"arch": entry["arch"], "kwargs": kwargs, "training": settings["training"][entry["arch"]]}
