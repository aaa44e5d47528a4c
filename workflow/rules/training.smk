# Shared stage: train one model of a paper's registry (seeded, resumable). Training jobs take the
# `train_jobs` resource so that, on a small machine, they do not oversubscribe the cores.


rule train_model:
    input:
        dataset="results/{paper}/preprocessed/dataset.npz",
        splits="results/{paper}/preprocessed/splits.csv",
    output:
        bundle="results/{paper}/models/{model}/model.pt",
        history="results/{paper}/models/{model}/history.csv",
    log:
        "logs/{paper}/train/{model}.log",
    wildcard_constraints:
        model=trained_model_pattern(),
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        train_jobs=1,
    params:
        arch=lambda wc: model_config(wc.paper, wc.model)["arch"],
        kwargs=lambda wc: as_json(model_config(wc.paper, wc.model)["kwargs"]),
        epochs=lambda wc: model_config(wc.paper, wc.model)["training"]["epochs"],
        batch_size=lambda wc: model_config(wc.paper, wc.model)["training"]["batch_size"],
        lr=lambda wc: model_config(wc.paper, wc.model)["training"]["lr"],
        optimizer=lambda wc: model_config(wc.paper, wc.model)["training"].get(
            "optimizer", "adam"
        ),
        seed=SEED,
        out_dir=lambda wc, output: os.path.dirname(output.bundle),
    shell:
        "python -m medrepro train --task {wildcards.paper} --dataset {input.dataset}"
        " --splits {input.splits} --arch {params.arch} --model-kwargs '{params.kwargs}'"
        " --epochs {params.epochs} --batch-size {params.batch_size} --lr {params.lr}"
        " --optimizer {params.optimizer} --seed {params.seed} --threads {threads}"
        " --out-dir {params.out_dir} > {log} 2>&1"
