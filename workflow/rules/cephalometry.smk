# Paper 000 (Vasiliev, Lachinov, Getmanskaya 2020): 3D cephalometric landmark regression and its
# OpenVINO deployment. Phantom CT -> LPS, resampling, HU window, z-score -> VGG regressor and
# stacked hourglass -> ONNX / IR / INT8 -> errors in mm and benchmarks -> report.


rule ceph_phantoms:
    output:
        directory(CEPH_PHANTOMS),
    log:
        "logs/cephalometry/phantoms.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        n_patients=CEPH["phantoms"]["n_patients"],
        spacing_mm=CEPH["phantoms"]["spacing_mm"],
        seed=SEED,
    shell:
        "python -m medrepro ceph-phantoms --out-dir {output} --n-patients {params.n_patients}"
        " --spacing-mm {params.spacing_mm} --seed {params.seed} > {log} 2>&1"


rule ceph_preprocess:
    input:
        cohort=ceph_cohort(),
    output:
        f"{CEPH_RESULTS}/preprocessed/dataset.npz",
    log:
        "logs/cephalometry/preprocess.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        spacing=" ".join(map(str, CEPH["input"]["spacing_mm"])),
        shape=" ".join(map(str, CEPH["input"]["shape"])),
        window=" ".join(map(str, CEPH["hu_window"])),
        labels=" ".join(CEPH["landmarks"]),
    shell:
        "python -m medrepro ceph-preprocess --cases {input.cohort}/cases.csv --out {output}"
        " --spacing {params.spacing} --shape {params.shape} --hu-window {params.window}"
        " --labels {params.labels} > {log} 2>&1"


rule ceph_derive:
    input:
        parent=ceph_parent_bundle,
    output:
        bundle=f"{CEPH_RESULTS}/models/{{model}}/model.pt",
        history=f"{CEPH_RESULTS}/models/{{model}}/history.csv",
    log:
        "logs/cephalometry/derive/{model}.log",
    wildcard_constraints:
        model=ceph_model_pattern(derived=True),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        overrides=lambda wc: as_json(CEPH["models"][wc.model]["kwargs"]),
        out_dir=lambda wc, output: os.path.dirname(output.bundle),
    shell:
        "python -m medrepro derive --parent {input.parent} --overrides '{params.overrides}'"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule ceph_evaluate:
    input:
        bundle=f"{CEPH_RESULTS}/models/{{model}}/model.pt",
        ir_fp32=f"{CEPH_RESULTS}/models/{{model}}/export/model_fp32.xml",
        ir_int8=f"{CEPH_RESULTS}/models/{{model}}/int8/model_int8.xml",
        dataset=f"{CEPH_RESULTS}/preprocessed/dataset.npz",
        splits=f"{CEPH_RESULTS}/preprocessed/splits.csv",
    output:
        f"{CEPH_RESULTS}/models/{{model}}/predictions.csv",
    log:
        "logs/cephalometry/evaluate/{model}.log",
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=6000,
        runtime=30,
    shell:
        "python -m medrepro ceph-evaluate --bundle {input.bundle} --ir-fp32 {input.ir_fp32}"
        " --ir-int8 {input.ir_int8} --dataset {input.dataset} --splits {input.splits}"
        " --split test --threads {threads} --out {output} > {log} 2>&1"


rule ceph_report:
    input:
        ceph_report_inputs(),
    output:
        report=f"{CEPH_RESULTS}/report.md",
        claims=report(
            f"{CEPH_RESULTS}/claims.csv",
            caption="../report/cephalometry_claims.rst",
            category="cephalometry",
            labels={"paper": "cephalometry", "table": "claims"},
        ),
        provenance=f"{CEPH_RESULTS}/provenance.json",
        tables=[
            report(
                f"{CEPH_RESULTS}/tables/{name}.csv",
                caption=f"../report/cephalometry_table_{name}.rst",
                category="cephalometry",
                labels={"paper": "cephalometry", "table": name},
            )
            for name in [
                "table1_rmse",
                "table2_sdr",
                "table3_5_speed",
                "table4_6_batch",
                "deployment",
                "perf_counters",
            ]
        ],
        figures=[
            report(
                f"{CEPH_RESULTS}/figures/{name}.png",
                caption=f"../report/cephalometry_{name}.rst",
                category="cephalometry",
                labels={"paper": "cephalometry", "figure": name},
            )
            for name in [
                "speedup",
                "batch_fps",
                "error_cdf",
                "training_curves",
                "perf_counters",
                "landmarks_example",
            ]
        ],
    log:
        "logs/cephalometry/report.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        args=CEPH_REPORT_ARGS,
        config=as_json(config),
    shell:
        "python -m medrepro ceph-report {params.args} --config-json '{params.config}' > {log} 2>&1"


rule cephalometry:
    input:
        rules.ceph_report.output,


rule cephalometry_figures:
    # No output: runs whenever asked, re-rendering tables, figures and report from the
    # results already computed (nothing is retrained when they are up to date).
    input:
        ceph_report_inputs(),
    log:
        "logs/cephalometry/figures.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        args=CEPH_REPORT_ARGS,
        config=as_json(config),
    shell:
        "python -m medrepro ceph-report {params.args} --config-json '{params.config}' > {log} 2>&1"
