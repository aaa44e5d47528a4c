# Paper 002, cross-task representation learning (Fu, Jiao, Suttie, Noble, MLMI 2020): a source
# ResNet trained on face identities, then landmark detectors trained from it by seven methods at
# several label budgets, scored by the mean error in pixels, CED, AUC and failure rate; the best
# model deployed to OpenVINO FP32 and INT8 (the shared export, quantize and benchmark stages).
# Design and file contracts: docs/face_landmarks.md.


rule face_phantoms:
    output:
        source=f"{FACE_DATA}/source/identities.csv",
        target=f"{FACE_DATA}/target/landmarks.json",
    log:
        "logs/face_landmarks/phantoms.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        p=FACE["phantoms"],
        size=FACE["image_size"],
        seed=SEED,
        out_dir=lambda wc, output: os.path.dirname(os.path.dirname(output.source)),
    shell:
        "python -m medrepro face-phantoms --out-dir {params.out_dir}"
        " --n-source-identities {params.p[n_source_identities]}"
        " --images-per-identity {params.p[images_per_identity]}"
        " --n-target {params.p[n_target]} --image-size {params.size}"
        " --max-yaw-deg {params.p[max_yaw_deg]} --max-pitch-deg {params.p[max_pitch_deg]}"
        " --max-roll-deg {params.p[max_roll_deg]} --seed {params.seed} > {log} 2>&1"


rule face_dataset:
    input:
        target=f"{face_target_dir()}/landmarks.json",
        source=f"{face_source_dir()}/identities.csv",
    output:
        multiext(
            f"{FACE_RESULTS}/preprocessed/",
            "dataset.npz",
            "splits.csv",
            "inputs_test.npz",
            "source.npz",
        ),
    log:
        "logs/face_landmarks/dataset.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        target_dir=lambda wc, input: os.path.dirname(input.target),
        source_dir=lambda wc, input: os.path.dirname(input.source),
        size=FACE["image_size"],
        margin=FACE["crop_margin"],
        test_fraction=FACE["test_fraction"],
        seed=SEED,
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "python -m medrepro face-dataset --target-dir {params.target_dir}"
        " --source-dir {params.source_dir} --image-size {params.size}"
        " --crop-margin {params.margin} --test-fraction {params.test_fraction}"
        " --seed {params.seed} --out-dir {params.out_dir} > {log} 2>&1"


rule face_train_source:
    input:
        f"{FACE_RESULTS}/preprocessed/source.npz",
    output:
        bundle=f"{FACE_RESULTS}/source/model.pt",
        history=f"{FACE_RESULTS}/source/history.csv",
        metrics=f"{FACE_RESULTS}/source/metrics.json",
    log:
        "logs/face_landmarks/train_source.log",
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=6000,
        runtime=240,
        train_jobs=1,
    params:
        s=FACE["source"],
        kwargs=as_json(FACE["source"]["model_kwargs"]),
        flip=FACE["augmentation"]["flip_prob"],
        seed=SEED,
        out_dir=lambda wc, output: os.path.dirname(output.bundle),
    shell:
        "python -m medrepro face-train-source --source {input} --model-kwargs '{params.kwargs}'"
        " --steps {params.s[steps]} --batch-size {params.s[batch_size]} --lr {params.s[lr]}"
        " --flip-prob {params.flip} --seed {params.seed} --threads {threads}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule face_train:
    input:
        dataset=f"{FACE_RESULTS}/preprocessed/dataset.npz",
        splits=f"{FACE_RESULTS}/preprocessed/splits.csv",
        # the hourglass trains from scratch: it does not wait for the source network
        source=lambda wc: [] if wc.method == "hg" else f"{FACE_RESULTS}/source/model.pt",
    output:
        bundle=f"{FACE_RESULTS}/models/{{method}}/{{budget}}/model.pt",
        history=f"{FACE_RESULTS}/models/{{method}}/{{budget}}/history.csv",
    log:
        "logs/face_landmarks/train_{method}_{budget}.log",
    wildcard_constraints:
        method="hg|fe|ftp|ft|ctd_cd|ctd_ed|ctd_com",
        budget=r"[1-9][0-9]*",
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=6000,
        runtime=240,
        train_jobs=1,
    params:
        t=FACE["target"],
        r=FACE["regularisation"],
        a=FACE["augmentation"],
        sigma=FACE["sigma"],
        hg=as_json(FACE["hourglass"]),
        source=lambda wc, input: (
            f" --source-bundle {input.source}" if input.source else ""
        ),
        seed=SEED,
        out_dir=lambda wc, output: os.path.dirname(output.bundle),
    shell:
        "python -m medrepro face-train --dataset {input.dataset} --splits {input.splits}"
        "{params.source} --method {wildcards.method}"
        " --budget {wildcards.budget} --steps {params.t[steps]}"
        " --batch-size {params.t[batch_size]} --lr {params.t[lr]} --sigma {params.sigma}"
        " --lambda-cd {params.r[lambda_cd]} --lambda-ed {params.r[lambda_ed]}"
        " --temperature {params.r[temperature]} --flip-prob {params.a[flip_prob]}"
        " --scale-range {params.a[scale_range]}"
        " --deconv-channels {params.t[deconv_channels]} --hg-kwargs '{params.hg}'"
        " --seed {params.seed} --threads {threads} --out-dir {params.out_dir} > {log} 2>&1"


rule face_evaluate:
    input:
        dataset=f"{FACE_RESULTS}/preprocessed/dataset.npz",
        splits=f"{FACE_RESULTS}/preprocessed/splits.csv",
        bundles=face_bundles(),
    output:
        multiext(
            f"{FACE_RESULTS}/evaluation/",
            "predictions.csv",
            "per_image.csv",
            "summary.csv",
            "ced.csv",
            "heatmaps.npz",
        ),
    log:
        "logs/face_landmarks/evaluate.log",
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        models=lambda wc, input: face_model_args(input.bundles),
        e=FACE["evaluation"],
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "python -m medrepro face-evaluate --dataset {input.dataset} --splits {input.splits}"
        " {params.models} --threshold-px {params.e[threshold_px]}"
        " --ced-max-px {params.e[ced_max_px]} --figure-budget {params.e[figure_budget]}"
        " --n-figure {params.e[n_figure]} --threads {threads}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule face_select:
    input:
        summary=f"{FACE_RESULTS}/evaluation/summary.csv",
        bundles=face_bundles(),
    output:
        bundle=f"{FACE_DEPLOY}/best/model.pt",
        selection=f"{FACE_DEPLOY}/best/selection.json",
    log:
        "logs/face_landmarks/select.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        budget=FACE["deploy"]["budget"],
        exclude=(
            " --exclude " + " ".join(FACE["deploy"]["exclude"])
            if FACE["deploy"]["exclude"]
            else ""
        ),
        models_root=lambda wc, input: os.path.dirname(
            os.path.dirname(os.path.dirname(input.bundles[0]))
        ),
        out_dir=lambda wc, output: os.path.dirname(output.bundle),
    shell:
        "python -m medrepro face-select --summary {input.summary}"
        " --models-root {params.models_root} --budget {params.budget}{params.exclude}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule face_export:
    input:
        bundle=f"{FACE_DEPLOY}/best/model.pt",
        inputs=f"{FACE_RESULTS}/preprocessed/inputs_test.npz",
    output:
        onnx=f"{FACE_DEPLOY}/best/export/model.onnx",
        ir_fp32=multiext(f"{FACE_DEPLOY}/best/export/model_fp32", ".xml", ".bin"),
        ir_fp16=multiext(f"{FACE_DEPLOY}/best/export/model_fp16", ".xml", ".bin"),
        parity=f"{FACE_DEPLOY}/best/export/parity.json",
    log:
        "logs/face_landmarks/export.log",
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=6000,
        runtime=30,
    params:
        out_dir=lambda wc, output: os.path.dirname(output.onnx),
    shell:
        "python -m medrepro export --bundle {input.bundle} --inputs {input.inputs}"
        " --out-dir {params.out_dir} --threads {threads} > {log} 2>&1"


# The face split has no validation part (the paper: 80 % training/validation, 20 % test), so
# NNCF's accuracy control scores the INT8 model on the first training images in budget order
# (`train@N`); the test set stays unseen.
rule face_quantize:
    input:
        bundle=f"{FACE_DEPLOY}/best/model.pt",
        ir=f"{FACE_DEPLOY}/best/export/model_fp32.xml",
        dataset=f"{FACE_RESULTS}/preprocessed/dataset.npz",
        splits=f"{FACE_RESULTS}/preprocessed/splits.csv",
    output:
        ir=multiext(f"{FACE_DEPLOY}/best/int8/model_int8", ".xml", ".bin"),
        report=f"{FACE_DEPLOY}/best/int8/quantization.json",
    log:
        "logs/face_landmarks/quantize.log",
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        q=FACE["quantization"],
        out_dir=lambda wc, output: os.path.dirname(output.report),
    shell:
        "python -m medrepro quantize --bundle {input.bundle} --ir {input.ir}"
        " --task face_landmarks --dataset {input.dataset} --splits {input.splits}"
        " --calibration-split train --validation-split train@{params.q[validation_images]}"
        " --max-drop {params.q[max_drop]} --subset-size {params.q[subset_size]}"
        " --mode accuracy_control --threads {threads} --out-dir {params.out_dir} > {log} 2>&1"


rule face_benchmark:
    input:
        bundle=f"{FACE_DEPLOY}/best/model.pt",
        onnx=f"{FACE_DEPLOY}/best/export/model.onnx",
        ir_fp32=f"{FACE_DEPLOY}/best/export/model_fp32.xml",
        ir_int8=f"{FACE_DEPLOY}/best/int8/model_int8.xml",
    output:
        table=f"{FACE_DEPLOY}/benchmark.csv",
        raw=f"{FACE_DEPLOY}/benchmark_raw.csv",
        perf_counters=f"{FACE_DEPLOY}/benchmark_perf_counters.csv",
        sysinfo=f"{FACE_DEPLOY}/benchmark_sysinfo.json",
    log:
        "logs/face_landmarks/benchmark.log",
    conda:
        ENV
    # every core, so that no other job runs beside a measurement
    threads: workflow.cores
    resources:
        mem_mb=benchmark_mem_limit_mb(),
        runtime=120,
    params:
        b=FACE["benchmark"],
        shape=face_benchmark_shape(),
        batches=" ".join(map(str, FACE["benchmark"]["batches"])),
        bench_threads=benchmark_threads(),
        mem_limit_mb=benchmark_mem_limit_mb(),
        timeout_s=config["benchmark"]["timeout_s"],
    shell:
        "python -m medrepro benchmark --model-name best --bundle {input.bundle}"
        " --onnx {input.onnx} --ir-fp32 {input.ir_fp32} --ir-int8 {input.ir_int8}"
        " --shape {params.shape} --threads {params.bench_threads} --batches {params.batches}"
        " --samples {params.b[samples]} --warmup {params.b[warmup]}"
        " --iterations {params.b[iterations]} --repeats {params.b[repeats]} --nreq 4"
        " --mem-limit-mb {params.mem_limit_mb} --timeout-s {params.timeout_s}"
        " --out {output.table} --raw-out {output.raw}"
        " --perf-counters-out {output.perf_counters} --sysinfo-out {output.sysinfo}"
        " > {log} 2>&1"


rule face_evaluate_deployed:
    input:
        dataset=f"{FACE_RESULTS}/preprocessed/dataset.npz",
        splits=f"{FACE_RESULTS}/preprocessed/splits.csv",
        bundle=f"{FACE_DEPLOY}/best/model.pt",
        ir_fp32=f"{FACE_DEPLOY}/best/export/model_fp32.xml",
        ir_int8=f"{FACE_DEPLOY}/best/int8/model_int8.xml",
    output:
        multiext(
            f"{FACE_DEPLOY}/evaluation/",
            "predictions.csv",
            "per_image.csv",
            "summary.csv",
            "ced.csv",
            "heatmaps.npz",
        ),
    log:
        "logs/face_landmarks/evaluate_deployed.log",
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        budget=FACE["deploy"]["budget"],
        e=FACE["evaluation"],
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "python -m medrepro face-evaluate --dataset {input.dataset} --splits {input.splits}"
        " --model best,{params.budget},torch,{input.bundle}"
        " --model best,{params.budget},openvino_fp32,{input.ir_fp32},{input.bundle}"
        " --model best,{params.budget},openvino_int8,{input.ir_int8},{input.bundle}"
        " --threshold-px {params.e[threshold_px]} --ced-max-px {params.e[ced_max_px]}"
        " --figure-budget {params.budget} --n-figure {params.e[n_figure]}"
        " --threads {threads} --out-dir {params.out_dir} > {log} 2>&1"


rule face_report:
    input:
        face_report_inputs(),
    output:
        report=f"{FACE_RESULTS}/report/report.md",
        claims=report(
            f"{FACE_RESULTS}/report/claims.csv",
            caption="../report/face_landmarks_claims.rst",
            category="face_landmarks",
            labels={"paper": "face_landmarks", "table": "claims"},
        ),
        provenance=f"{FACE_RESULTS}/report/provenance.json",
        tables=[
            report(
                f"{FACE_RESULTS}/report/tables/{name}.csv",
                caption=f"../report/face_landmarks_table_{name}.rst",
                category="face_landmarks",
                labels={"paper": "face_landmarks", "table": name},
            )
            for name in FACE_TABLES
        ],
        figures=[
            report(
                f"{FACE_RESULTS}/report/figures/{name}.png",
                caption=f"../report/face_landmarks_{name}.rst",
                category="face_landmarks",
                labels={"paper": "face_landmarks", "figure": name},
            )
            for name in FACE_FIGURES
        ],
    log:
        "logs/face_landmarks/report.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        args=FACE_REPORT_ARGS,
        config=as_json(FACE | {"scale": SCALE}),
    shell:
        "python -m medrepro face-report {params.args} --config-json '{params.config}'"
        " > {log} 2>&1"


rule face_landmarks:
    input:
        rules.face_report.output,


rule face_landmarks_figures:
    # No output: runs whenever asked, re-rendering tables, figures and report from the results
    # already computed (nothing is retrained when they are up to date).
    input:
        face_report_inputs(),
    log:
        "logs/face_landmarks/figures.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        args=FACE_REPORT_ARGS,
        config=as_json(FACE | {"scale": SCALE}),
    shell:
        "python -m medrepro face-report {params.args} --config-json '{params.config}'"
        " > {log} 2>&1"
