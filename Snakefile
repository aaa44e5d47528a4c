# medrepro: five medical-imaging deep-learning papers reproduced end to end on a CPU.
# This file only loads the config, validates it, includes the rules and names the targets;
# everything else lives in workflow/rules/ (one file per paper and per shared stage).

from snakemake.utils import min_version

min_version("9.20")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


envvars:
    "PATH",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/quantize.smk"
include: "workflow/rules/benchmark.smk"
include: "workflow/rules/cephalometry.smk"
include: "workflow/rules/brain_extraction.smk"
include: "workflow/rules/cerebellum_yolo.smk"
include: "workflow/rules/lowres.smk"
include: "workflow/rules/face_landmarks.smk"


wildcard_constraints:
    paper="|".join(PAPERS),
    model=r"[a-z][a-z0-9_]*",
    split="train|val|test",
    subject=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    dataset="luna16|metastases",
    runtime="torch|openvino_fp32|openvino_int8",


rule all:
    default_target: True
    input:
        rules.cephalometry.input,
        rules.brain_extraction.input,
        rules.cerebellum_yolo.input,
        rules.lowres.input,
        rules.face_landmarks.input,
