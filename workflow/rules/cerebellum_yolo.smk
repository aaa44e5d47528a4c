# Paper 004 (Ramos et al. 2020): cerebellum localisation in fetal ultrasound with YOLO. BMP images
# and MAT masks -> YOLO boxes, viridis RGB -> YOLO (S = 7, 9, 11, 13) and a tiny-YOLO momentum x
# learning-rate grid, every checkpoint scored on the test images -> the best model through
# OpenVINO FP32 / INT8 -> report. Design and file contracts: docs/cerebellum_yolo.md.


rule yolo_phantoms:
    output:
        directory(YOLO_PHANTOMS),
    log:
        "logs/cerebellum_yolo/phantoms.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        n_volumes=YOLO["phantoms"]["n_volumes"],
        slices=YOLO["phantoms"]["slices"],
        height=YOLO["phantoms"]["height"],
        width=YOLO["phantoms"]["width"],
        seed=SEED,
    shell:
        "python -m medrepro us-phantoms --out-dir {output} --n-volumes {params.n_volumes}"
        " --slices {params.slices} --height {params.height} --width {params.width}"
        " --seed {params.seed} > {log} 2>&1"


rule yolo_annotate:
    input:
        cohort=yolo_cohort(),
    output:
        directory(f"{YOLO_RESULTS}/annotations"),
    log:
        "logs/cerebellum_yolo/annotate.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        test_count=YOLO["test_count"],
        split=YOLO["split"],
        seed=SEED,
    shell:
        "python -m medrepro yolo-annotate --cohort {input.cohort} --out-dir {output}"
        " --test-count {params.test_count} --split {params.split} --seed {params.seed}"
        " > {log} 2>&1"


rule yolo_dataset:
    input:
        cohort=yolo_cohort(),
        annotations=f"{YOLO_RESULTS}/annotations",
    output:
        dataset=f"{YOLO_RESULTS}/preprocessed/dataset.npz",
        cases=f"{YOLO_RESULTS}/preprocessed/cases.csv",
        splits=f"{YOLO_RESULTS}/preprocessed/splits.csv",
    log:
        "logs/cerebellum_yolo/dataset.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        input_size=yolo_input_size(),
        val_fraction=YOLO["val_fraction"],
        seed=SEED,
        out_dir=lambda wc, output: os.path.dirname(output.dataset),
    shell:
        "python -m medrepro yolo-dataset --cohort {input.cohort}"
        " --annotations {input.annotations} --input-size {params.input_size}"
        " --val-fraction {params.val_fraction} --seed {params.seed}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule yolo_pretrain:
    output:
        bundle=f"{YOLO_RESULTS}/models/pretrained_{{arch}}/model.pt",
        history=f"{YOLO_RESULTS}/models/pretrained_{{arch}}/history.csv",
    log:
        "logs/cerebellum_yolo/pretrain/{arch}.log",
    wildcard_constraints:
        arch="yolov1|tiny_yolov1",
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=60,
        train_jobs=1,
    params:
        kwargs=lambda wc: as_json(YOLO["arch_kwargs"][wc.arch]),
        iterations=YOLO["pretrain"]["iterations"],
        batch_size=YOLO["pretrain"]["batch_size"],
        lr=YOLO["pretrain"]["lr"],
        seed=SEED,
    shell:
        "python -m medrepro yolo-pretrain --arch {wildcards.arch} --model-kwargs '{params.kwargs}'"
        " --iterations {params.iterations} --batch-size {params.batch_size} --lr {params.lr}"
        " --seed {params.seed} --threads {threads} --out {output.bundle}"
        " --history {output.history} > {log} 2>&1"


rule yolo_train:
    input:
        dataset=f"{YOLO_RESULTS}/preprocessed/dataset.npz",
        splits=f"{YOLO_RESULTS}/preprocessed/splits.csv",
        init=yolo_init,
    output:
        bundle=f"{YOLO_RESULTS}/models/{{run}}/model.pt",
        checkpoints=f"{YOLO_RESULTS}/models/{{run}}/checkpoints.csv",
        history=f"{YOLO_RESULTS}/models/{{run}}/history.csv",
    log:
        "logs/cerebellum_yolo/train/{run}.log",
    wildcard_constraints:
        run="|".join(YOLO["experiments"]),
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=6000,
        runtime=240,
        train_jobs=1,
    params:
        arch=lambda wc: YOLO["experiments"][wc.run]["arch"],
        kwargs=lambda wc: as_json(yolo_run_kwargs(wc.run)),
        init=lambda wc, input: f"--init {input.init}" if input.init else "",
        lr=lambda wc: YOLO["experiments"][wc.run]["lr"],
        momentum=lambda wc: YOLO["experiments"][wc.run]["momentum"],
        batch_size=YOLO["training"]["batch_size"],
        iterations=YOLO["training"]["iterations"],
        checkpoint_every=YOLO["training"]["checkpoint_every"],
        weight_decay=YOLO["training"]["weight_decay"],
        conf_threshold=YOLO["conf_threshold"],
        seed=SEED,
        out_dir=lambda wc, output: os.path.dirname(output.bundle),
    shell:
        "python -m medrepro yolo-train --dataset {input.dataset} --splits {input.splits}"
        " --arch {params.arch} --model-kwargs '{params.kwargs}' {params.init}"
        " --lr {params.lr} --momentum {params.momentum} --batch-size {params.batch_size}"
        " --iterations {params.iterations} --checkpoint-every {params.checkpoint_every}"
        " --weight-decay {params.weight_decay} --conf-threshold {params.conf_threshold}"
        " --seed {params.seed} --threads {threads} --out-dir {params.out_dir} > {log} 2>&1"


rule yolo_select_best:
    input:
        checkpoints=expand(
            f"{YOLO_RESULTS}/models/{{r}}/checkpoints.csv", r=yolo_detector_runs()
        ),
        bundles=expand(f"{YOLO_RESULTS}/models/{{r}}/model.pt", r=yolo_detector_runs()),
    output:
        bundle=f"{YOLO_RESULTS}/models/best/model.pt",
        best=f"{YOLO_RESULTS}/models/best/best.json",
        history=f"{YOLO_RESULTS}/models/best/history.csv",
    log:
        "logs/cerebellum_yolo/select_best.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        runs=lambda wc, input: " ".join(os.path.dirname(b) for b in input.bundles),
        out_dir=lambda wc, output: os.path.dirname(output.bundle),
    shell:
        "python -m medrepro yolo-select-best --runs {params.runs} --out-dir {params.out_dir}"
        " > {log} 2>&1"


rule yolo_evaluate:
    input:
        bundle=f"{YOLO_RESULTS}/models/best/model.pt",
        ir_fp32=f"{YOLO_RESULTS}/models/best/export/model_fp32.xml",
        ir_int8=f"{YOLO_RESULTS}/models/best/int8/model_int8.xml",
        dataset=f"{YOLO_RESULTS}/preprocessed/dataset.npz",
        splits=f"{YOLO_RESULTS}/preprocessed/splits.csv",
    output:
        table=f"{YOLO_RESULTS}/models/best/deployment.csv",
        predictions=f"{YOLO_RESULTS}/models/best/predictions.csv",
    log:
        "logs/cerebellum_yolo/evaluate.log",
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        conf_threshold=YOLO["conf_threshold"],
    shell:
        "python -m medrepro yolo-evaluate --bundle {input.bundle} --ir-fp32 {input.ir_fp32}"
        " --ir-int8 {input.ir_int8} --dataset {input.dataset} --splits {input.splits}"
        " --split test --conf-threshold {params.conf_threshold} --threads {threads}"
        " --out {output.table} --predictions-out {output.predictions} > {log} 2>&1"


rule yolo_report:
    input:
        yolo_report_inputs(),
    output:
        report=f"{YOLO_RESULTS}/report.md",
        claims=report(
            f"{YOLO_RESULTS}/claims.csv",
            caption="../report/cerebellum_yolo_claims.rst",
            category="cerebellum_yolo",
            labels={"paper": "cerebellum_yolo", "table": "claims"},
        ),
        provenance=f"{YOLO_RESULTS}/provenance.json",
        tables=[
            report(
                f"{YOLO_RESULTS}/tables/{name}.csv",
                caption=f"../report/cerebellum_yolo_table_{name}.rst",
                category="cerebellum_yolo",
                labels={"paper": "cerebellum_yolo", "table": name},
            )
            for name in [
                "table1_yolo_best",
                "table2_tiny_grid",
                "transfer",
                "deployment",
                "annotations",
            ]
        ],
        figures=[
            report(
                f"{YOLO_RESULTS}/figures/{name}.png",
                caption=f"../report/cerebellum_yolo_{name}.rst",
                category="cerebellum_yolo",
                labels={"paper": "cerebellum_yolo", "figure": name},
            )
            for name in [
                "fig4_ap_f1_iterations",
                "fig10_false_positives",
                "fig5_8_predictions",
                "tiny_grid",
                "box_statistics",
            ]
        ],
    log:
        "logs/cerebellum_yolo/report.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        args=YOLO_REPORT_ARGS,
        config=as_json(YOLO | {"scale": SCALE}),
    shell:
        "python -m medrepro yolo-report {params.args} --config-json '{params.config}' > {log} 2>&1"


rule cerebellum_yolo:
    input:
        rules.yolo_report.output,


rule cerebellum_yolo_figures:
    # No output: runs whenever asked, re-rendering tables, figures and report from the
    # results already computed (nothing is retrained when they are up to date).
    input:
        yolo_report_inputs(),
    log:
        "logs/cerebellum_yolo/figures.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        args=YOLO_REPORT_ARGS,
        config=as_json(YOLO | {"scale": SCALE}),
    shell:
        "python -m medrepro yolo-report {params.args} --config-json '{params.config}' > {log} 2>&1"
