# Shared helpers: config validation, scale resolution, the interpreter that
# every job runs. No heavy imports here, since this code runs again for every cluster job.

import copy
import json
import os
import sys

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

SCALE = config["scale"]
SEED = config["seed"]
THREADS = config["threads"]

# Every rule calls the project's package through its command-line entry point,
# `python -m medrepro <stage>`: put the interpreter that runs Snakemake (the project's
# environment) first on the PATH of the jobs.
os.environ["PATH"] = os.pathsep.join(
    [os.path.dirname(sys.executable), os.environ["PATH"]]
)
ENV = "../../envs/medrepro.yaml"

# The papers whose rules are included so far.
PAPERS = ["cephalometry"]


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
    return {
        "arch": entry["arch"],
        "kwargs": kwargs,
        "training": settings["training"][entry["arch"]],
    }


# --- quantize ---


def quantization_settings(wildcards):
    return paper_settings(wildcards.paper)["quantization"]


# --- benchmark ---


def benchmark_settings(wildcards):
    return paper_settings(wildcards.paper)["benchmark"]


# --- cephalometry ---

CEPH = paper_settings("cephalometry")
CEPH_MODELS = list(CEPH["models"])
CEPH_RESULTS = "results/cephalometry"
CEPH_PHANTOMS = "data/cephalometry/synthetic"


def ceph_cohort():
    """The cohort directory (with cases.csv): the user's data, or the generated phantoms."""
    return CEPH["data_dir"] or CEPH_PHANTOMS


def ceph_model_pattern(derived):
    """Regex of the models that are trained (``derived=False``) or derived from a trained one."""
    names = [
        m
        for m, entry in CEPH["models"].items()
        if bool(entry.get("derive_from")) == derived
    ]
    return "|".join(names) or "(?!)"


def ceph_parent_bundle(wildcards):
    parent = CEPH["models"][wildcards.model]["derive_from"]
    if parent not in CEPH["models"] or CEPH["models"][parent].get("derive_from"):
        raise ValueError(
            f"cephalometry.models.{wildcards.model}.derive_from: {parent!r} is not a trained model"
        )
    return f"{CEPH_RESULTS}/models/{parent}/model.pt"


def ceph_paper_model(role):
    """The model playing ``role`` in the paper (``direct_regression`` or ``hourglass``)."""
    names = [
        m for m, entry in CEPH["models"].items() if entry.get("paper_role") == role
    ]
    return names[0] if names else "none"


def ceph_report_inputs():
    per_model = [
        "models/{model}/predictions.csv",
        "models/{model}/history.csv",
        "models/{model}/export/parity.json",
        "models/{model}/int8/quantization.json",
        "benchmark/{model}.csv",
        "benchmark/{model}_perf_counters.csv",
        "benchmark/{model}_sysinfo.json",
    ]
    files = [
        f"{CEPH_RESULTS}/preprocessed/dataset.npz",
        f"{CEPH_RESULTS}/preprocessed/splits.csv",
    ]
    files += expand(
        f"{CEPH_RESULTS}/{{f}}",
        f=[p.format(model=m) for m in CEPH_MODELS for p in per_model],
    )
    return files


CEPH_REPORT_ARGS = (
    f"--results-dir {CEPH_RESULTS} --models {' '.join(CEPH_MODELS)}"
    f" --paper-models {ceph_paper_model('direct_regression')} {ceph_paper_model('hourglass')}"
    f" --dataset {CEPH_RESULTS}/preprocessed/dataset.npz"
    f" --splits {CEPH_RESULTS}/preprocessed/splits.csv --seed {SEED}"
)
