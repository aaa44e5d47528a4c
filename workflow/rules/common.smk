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

# The papers that use the shared train / export / quantize / benchmark rules (lowres has its own:
# two datasets, whole-volume inference and two-stage export).
PAPERS = ["cephalometry", "brain_extraction", "cerebellum_yolo"]
# The papers whose split is drawn by the shared `split` stage (the others write their own).
SPLIT_PAPERS = "cephalometry|brain_extraction"


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


def trained_model_pattern():
    """Regex of every paper's models that are trained (not derived from another model)."""
    names = sorted(
        {
            m
            for paper in PAPERS
            for m, entry in config[paper].get("models", {}).items()
            if not entry.get("derive_from")
        }
    )
    return "|".join(names) or "(?!)"


def split_cases_source(wildcards):
    """What a paper's split depends on: the cohort directory or the table of cases."""
    if wildcards.paper == "cephalometry":
        return ceph_cohort()
    return f"results/{wildcards.paper}/preprocessed/cases.csv"


def split_cases_table(wildcards):
    """The table of cases (case_id, patient_id) that a paper's split is drawn from."""
    if wildcards.paper == "cephalometry":
        return f"{ceph_cohort()}/cases.csv"
    return split_cases_source(wildcards)


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


# --- brain extraction ---

BRAIN = paper_settings("brain_extraction")
BRAIN_MODELS = list(BRAIN["models"])
BRAIN_RESULTS = "results/brain_extraction"
BRAIN_PHANTOMS = "data/brain_extraction/synthetic"


def brain_cohort():
    """The cohort directory (with subjects.csv): the user's data, or the generated phantoms."""
    return BRAIN["data_dir"] or BRAIN_PHANTOMS


def brain_subjects():
    """Subject ids of the cohort, read from its subjects.csv (after the phantoms exist)."""
    import csv

    if BRAIN["data_dir"]:
        cohort = BRAIN["data_dir"]
    else:
        cohort = checkpoints.brain_phantoms.get().output[0]
    table = os.path.join(cohort, "subjects.csv")
    if not os.path.exists(table):
        raise ValueError(
            f"{table}: missing (brain_extraction.data_dir needs a subjects.csv)"
        )
    with open(table, newline="") as handle:
        ids = [row["subject_id"] for row in csv.DictReader(handle)]
    if not ids:
        raise ValueError(f"{table}: no subjects")
    return ids


def brain_registered_dirs(wildcards):
    return expand(f"{BRAIN_RESULTS}/registered/{{s}}", s=brain_subjects())


def brain_native_dirs(wildcards):
    return expand(f"{BRAIN_RESULTS}/native/{{s}}", s=brain_subjects())


def brain_atlas_args():
    """Command-line arguments naming a user's atlas, or none for the built-in MNI152 atlas."""
    if BRAIN["atlas"] is None:
        return ""
    if not BRAIN["atlas_mask"]:
        raise ValueError(
            "brain_extraction.atlas is set: brain_extraction.atlas_mask is required"
        )
    return f"--atlas {BRAIN['atlas']} --atlas-mask {BRAIN['atlas_mask']}"


def brain_scaling_threads():
    """Thread counts of the core-scaling benchmark: the config list, or 1 .. all cores."""
    return BRAIN["scaling_threads"] or list(range(1, (os.cpu_count() or 1) + 1))


def brain_paper_model():
    names = [
        m for m, e in BRAIN["models"].items() if e.get("paper_role") == "brainmage"
    ]
    return names[0] if names else BRAIN_MODELS[0]


def brain_report_inputs():
    model = brain_paper_model()
    per_model = [
        "models/{model}/evaluation.csv",
        "models/{model}/history.csv",
        "models/{model}/export/parity.json",
        "models/{model}/int8/quantization.json",
        "models/{model}/int8_default/quantization.json",
        "benchmark/{model}.csv",
        "benchmark/{model}_perf_counters.csv",
        "benchmark/{model}_sysinfo.json",
    ]
    files = [
        f"{BRAIN_RESULTS}/preprocessed/qc.csv",
        f"{BRAIN_RESULTS}/preprocessed/splits.csv",
    ]
    files += [f"{BRAIN_RESULTS}/{p.format(model=model)}" for p in per_model]
    files += [f"{BRAIN_RESULTS}/models/{model}/masks"]
    files += expand(
        f"{BRAIN_RESULTS}/benchmark/scaling/{model}_t{{k}}.csv",
        k=brain_scaling_threads(),
    )
    return files


BRAIN_REPORT_ARGS = (
    f"--results-dir {BRAIN_RESULTS} --model {brain_paper_model()}"
    f" --scaling-threads {' '.join(map(str, brain_scaling_threads()))}"
    f" --seed {SEED} --out-dir {BRAIN_RESULTS}"
)


# --- cerebellum localisation with YOLO ---

YOLO = paper_settings("cerebellum_yolo")
YOLO_RESULTS = "results/cerebellum_yolo"
YOLO_PHANTOMS = "data/cerebellum_yolo/synthetic"


def yolo_cohort():
    """The cohort directory (with images.csv): the user's data, or the generated phantoms."""
    return YOLO["data_dir"] or YOLO_PHANTOMS


def yolo_runs():
    """The experiments run at the current scale (config order)."""
    names = YOLO["run_experiments"] or list(YOLO["experiments"])
    unknown = sorted(set(names) - set(YOLO["experiments"]))
    if unknown:
        raise ValueError(
            f"cerebellum_yolo run_experiments: unknown experiment(s) {unknown}"
        )
    return [n for n in YOLO["experiments"] if n in names]


def yolo_detector_runs():
    """The runs of the full (24-conv) YOLO, among which the deployed model is chosen."""
    return [r for r in yolo_runs() if YOLO["experiments"][r]["arch"] == "yolov1"]


def yolo_pretrained_archs():
    return sorted({YOLO["experiments"][r]["arch"] for r in yolo_runs()})


def yolo_run_kwargs(run):
    """Architecture keyword arguments of a run: the scale's arch_kwargs plus its grid S."""
    entry = YOLO["experiments"][run]
    return {**YOLO["arch_kwargs"][entry["arch"]], "S": entry["S"]}


def yolo_init(wildcards):
    """The pre-trained bundle a run starts from (none for a run from scratch)."""
    entry = YOLO["experiments"][wildcards.run]
    if not entry["pretrained"]:
        return []
    return f"{YOLO_RESULTS}/models/pretrained_{entry['arch']}/model.pt"


def yolo_input_size():
    """Side of the square images in dataset.npz: the largest network input of the runs."""
    return max(YOLO["arch_kwargs"][a]["input_size"] for a in yolo_pretrained_archs())


def yolo_report_inputs():
    files = [
        f"{YOLO_RESULTS}/annotations",
        f"{YOLO_RESULTS}/preprocessed/dataset.npz",
        f"{YOLO_RESULTS}/models/best/best.json",
        f"{YOLO_RESULTS}/models/best/deployment.csv",
        f"{YOLO_RESULTS}/models/best/predictions.csv",
        f"{YOLO_RESULTS}/models/best/export/parity.json",
        f"{YOLO_RESULTS}/models/best/int8/quantization.json",
        f"{YOLO_RESULTS}/benchmark/best.csv",
        f"{YOLO_RESULTS}/benchmark/best_sysinfo.json",
    ]
    files += expand(f"{YOLO_RESULTS}/models/{{r}}/checkpoints.csv", r=yolo_runs())
    files += expand(f"{YOLO_RESULTS}/models/{{r}}/model.pt", r=yolo_runs())
    files += expand(
        f"{YOLO_RESULTS}/models/pretrained_{{a}}/history.csv", a=yolo_pretrained_archs()
    )
    return files


YOLO_REPORT_ARGS = (
    f"--results-dir {YOLO_RESULTS} --runs {' '.join(yolo_runs())} --seed {SEED}"
    f" --out-dir {YOLO_RESULTS}"
)


# ---------------------------------------------------------------- lowres (paper 003)
LOWRES = paper_settings("lowres")
LOWRES_RESULTS = "results/lowres"
# The file that marks each dataset's input directory (written last by the phantom generators).
LOWRES_DATA_MARKER = {"luna16": "annotations.csv", "metastases": "subjects.csv"}


def lowres_data_dir(dataset):
    """A dataset's input directory: the configured real data, or the synthetic phantoms."""
    return LOWRES[dataset]["data_dir"] or f"data/lowres/{dataset}"


def lowres_threads_list():
    """Thread counts timed: the config's list, or 1, 2, 4, 8, 16 up to the cores, and the cores."""
    if LOWRES["inference"]["threads_list"]:
        return sorted(set(LOWRES["inference"]["threads_list"]))
    cores = os.cpu_count() or 1
    return sorted({t for t in (1, 2, 4, 8, 16) if t <= cores} | {cores})


def lowres_arch(model):
    """Settings of one network at the current scale (kwargs, batch, patches)."""
    return LOWRES["archs"][model]


def lowres_ir(wildcards):
    """The OpenVINO directory a runtime needs (none for PyTorch)."""
    if wildcards.runtime == "torch":
        return []
    return f"{LOWRES_RESULTS}/{wildcards.dataset}/models/{wildcards.model}/openvino"


def lowres_timing_summaries(dataset):
    """Every timing summary of a dataset: `threads` from the prediction run; the other thread
    counts (PyTorch only, as the paper) each timed in a run of its own."""
    files = []
    for model in LOWRES["models"]:
        for runtime in LOWRES["runtimes"]:
            files.append(
                f"{LOWRES_RESULTS}/{dataset}/predictions/{model}/{runtime}/summary.json"
            )
            files += [
                f"{LOWRES_RESULTS}/{dataset}/timing/{model}/{runtime}_t{t}/summary.json"
                for t in lowres_threads_list()
                if t != THREADS and runtime == "torch"
            ]
    return files


def lowres_report_inputs():
    files = []
    for dataset in LOWRES["datasets"]:
        root = f"{LOWRES_RESULTS}/{dataset}"
        files += [
            f"{root}/preprocessed/{f}"
            for f in ("studies.npz", "studies.csv", "objects.csv")
        ]
        files += lowres_timing_summaries(dataset)
        files += expand(
            f"{root}/evaluation/{{m}}/{{r}}/summary.json",
            m=LOWRES["models"],
            r=LOWRES["runtimes"],
        )
        files += expand(
            f"{root}/predictions/{{m}}/{{r}}/probabilities.npz",
            m=LOWRES["models"],
            r=LOWRES["runtimes"],
        )
        files += expand(f"{root}/models/{{m}}/history.csv", m=LOWRES["models"])
        if any(r != "torch" for r in LOWRES["runtimes"]):
            files += expand(f"{root}/models/{{m}}/openvino", m=LOWRES["models"])
    return files


LOWRES_REPORT_ARGS = (
    f"--results-dir {LOWRES_RESULTS} --datasets {' '.join(LOWRES['datasets'])}"
    f" --models {' '.join(LOWRES['models'])} --runtimes {' '.join(LOWRES['runtimes'])}"
    f" --threads {THREADS} --threads-list {' '.join(map(str, sorted(set(lowres_threads_list()) | {THREADS})))}"
    f" --seed {SEED} --out-dir {LOWRES_RESULTS}/report"
)


# ---------------------------------------------------------------- face_landmarks (paper 002)
FACE = paper_settings("face_landmarks")
FACE_RESULTS = "results/face_landmarks"
FACE_DATA = "data/face_landmarks"
FACE_METHODS = list(FACE["methods"])
FACE_BUDGETS = [int(b) for b in FACE["budgets"]]
FACE_FULL_BUDGET = max(FACE_BUDGETS)
FACE_DEPLOY = f"{FACE_RESULTS}/deploy"
FACE_FIGURES = ["fig5_ced", "fig3_predictions", "budget_sweep", "deployment"]
FACE_TABLES = ["table1_methods", "budget_sweep", "deployment"]


def face_target_dir():
    """Images + iBUG .pts + landmarks.json: the configured real data, or the synthetic faces."""
    return FACE["data_dir"] or f"{FACE_DATA}/target"


def face_source_dir():
    """Identity-labelled faces of the source task: configured, or synthetic."""
    return FACE["source_dir"] or f"{FACE_DATA}/source"


def face_bundles():
    """Every landmark model: one per method and label budget."""
    return expand(
        f"{FACE_RESULTS}/models/{{m}}/{{b}}/model.pt", m=FACE_METHODS, b=FACE_BUDGETS
    )


def face_model_args(bundles):
    """face-evaluate's `--model METHOD,BUDGET,RUNTIME,PATH` for PyTorch bundles."""
    specs = []
    for path in bundles:
        budget_dir = os.path.dirname(path)
        method = os.path.basename(os.path.dirname(budget_dir))
        specs.append(f"--model {method},{os.path.basename(budget_dir)},torch,{path}")
    return " ".join(specs)


def face_benchmark_shape():
    return f"1 3 {FACE['image_size']} {FACE['image_size']}"


def face_report_inputs():
    return [
        f"{FACE_RESULTS}/preprocessed/dataset.npz",
        f"{FACE_RESULTS}/preprocessed/splits.csv",
        f"{FACE_RESULTS}/source/metrics.json",
        f"{FACE_RESULTS}/evaluation/summary.csv",
        f"{FACE_DEPLOY}/best/selection.json",
        f"{FACE_DEPLOY}/best/export/parity.json",
        f"{FACE_DEPLOY}/best/int8/quantization.json",
        f"{FACE_DEPLOY}/benchmark.csv",
        f"{FACE_DEPLOY}/evaluation/summary.csv",
    ]


FACE_REPORT_ARGS = (
    f"--results-dir {FACE_RESULTS} --methods {' '.join(FACE_METHODS)}"
    f" --budgets {' '.join(map(str, FACE_BUDGETS))} --full-budget {FACE_FULL_BUDGET}"
    f" --threshold-px {FACE['evaluation']['threshold_px']} --seed {SEED}"
    f" --out-dir {FACE_RESULTS}/report"
)
