# Shared stages: patient-level train/val/test split of a paper's cases, and one split's network
# inputs (used by the export parity check).


rule split_cases:
    input:
        split_cases_source,
    output:
        "results/{paper}/preprocessed/splits.csv",
    log:
        "logs/{paper}/split.log",
    wildcard_constraints:
        paper=SPLIT_PAPERS,
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        fractions=lambda wc: " ".join(
            map(str, paper_settings(wc.paper)["split_fractions"])
        ),
        seed=SEED,
        cases=split_cases_table,
    shell:
        "python -m medrepro split --cases {params.cases} --out {output}"
        " --fractions {params.fractions} --seed {params.seed} > {log} 2>&1"


rule select_inputs:
    input:
        dataset="results/{paper}/preprocessed/dataset.npz",
        splits="results/{paper}/preprocessed/splits.csv",
    output:
        "results/{paper}/preprocessed/inputs_{split}.npz",
    log:
        "logs/{paper}/select_inputs_{split}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=5,
    params:
        layout=lambda wc: "rgb" if wc.paper == "cerebellum_yolo" else "volume",
    shell:
        "python -m medrepro select-inputs --dataset {input.dataset} --splits {input.splits}"
        " --split {wildcards.split} --layout {params.layout} --out {output} > {log} 2>&1"
