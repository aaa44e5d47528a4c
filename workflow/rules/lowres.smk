# Paper 003, LowRes (Shirokikh et al. 2021): five networks on two datasets, each trained, exported
# to OpenVINO (FP32, INT8), run on whole test volumes by patches with timing per study at several
# thread counts, and scored object-wise (average recall over the FROC curve, object Dice).
# Design and file contracts: docs/lowres.md.


rule lowres_luna16_phantoms:
    output:
        "data/lowres/luna16/annotations.csv",
    log:
        "logs/lowres/luna16_phantoms.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        p=LOWRES["phantoms"]["luna16"],
        shape=lambda wc: " ".join(map(str, LOWRES["phantoms"]["luna16"]["shape"])),
        seed=SEED,
    shell:
        "python -m medrepro lowres-luna16-phantoms --out-dir data/lowres/luna16"
        " --n-subsets {params.p[n_subsets]} --per-subset {params.p[per_subset]}"
        " --shape {params.shape} --spacing-mm {params.p[spacing_mm]}"
        " --slice-mm {params.p[slice_mm]} --outside-lung-scans {params.p[outside_lung_scans]}"
        " --seed {params.seed} > {log} 2>&1"


rule lowres_metastases_phantoms:
    output:
        "data/lowres/metastases/subjects.csv",
    log:
        "logs/lowres/metastases_phantoms.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        p=LOWRES["phantoms"]["metastases"],
        seed=SEED,
    shell:
        "python -m medrepro lowres-metastases-phantoms --out-dir data/lowres/metastases"
        " --n-subjects {params.p[n_subjects]} --spacing-mm {params.p[spacing_mm]}"
        " --seed {params.seed} > {log} 2>&1"


rule lowres_luna16_dataset:
    input:
        f"{lowres_data_dir('luna16')}/annotations.csv",
    output:
        multiext(f"{LOWRES_RESULTS}/luna16/preprocessed/studies", ".npz", ".csv"),
        f"{LOWRES_RESULTS}/luna16/preprocessed/objects.csv",
    log:
        "logs/lowres/luna16_dataset.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        data_dir=lambda wc, input: os.path.dirname(input[0]),
        window=" ".join(map(str, LOWRES["luna16"]["hu_window"])),
        train=" ".join(map(str, LOWRES["luna16"]["train_subsets"])),
        val=" ".join(map(str, LOWRES["luna16"]["val_subsets"])),
        test=" ".join(map(str, LOWRES["luna16"]["test_subsets"])),
        on_bad=LOWRES["luna16"]["on_bad_study"],
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "python -m medrepro lowres-luna16-dataset --data-dir {params.data_dir}"
        " --hu-window {params.window} --train-subsets {params.train}"
        " --val-subsets {params.val} --test-subsets {params.test}"
        " --on-bad-study {params.on_bad}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule lowres_metastases_dataset:
    input:
        f"{lowres_data_dir('metastases')}/subjects.csv",
    output:
        multiext(f"{LOWRES_RESULTS}/metastases/preprocessed/studies", ".npz", ".csv"),
        f"{LOWRES_RESULTS}/metastases/preprocessed/objects.csv",
    log:
        "logs/lowres/metastases_dataset.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        data_dir=lambda wc, input: os.path.dirname(input[0]),
        fractions=" ".join(map(str, LOWRES["metastases"]["split_fractions"])),
        on_bad=LOWRES["metastases"]["on_bad_study"],
        seed=SEED,
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "python -m medrepro lowres-metastases-dataset --data-dir {params.data_dir}"
        " --split-fractions {params.fractions} --seed {params.seed}"
        " --on-bad-study {params.on_bad}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule lowres_train:
    input:
        studies=f"{LOWRES_RESULTS}/{{dataset}}/preprocessed/studies.npz",
        table=f"{LOWRES_RESULTS}/{{dataset}}/preprocessed/studies.csv",
    output:
        bundle=f"{LOWRES_RESULTS}/{{dataset}}/models/{{model}}/model.pt",
        history=f"{LOWRES_RESULTS}/{{dataset}}/models/{{model}}/history.csv",
    log:
        "logs/lowres/{dataset}/train_{model}.log",
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        train_jobs=1,
    params:
        batch_size=lambda wc: lowres_arch(wc.model)["batch_size"],
        patch=lambda wc: lowres_arch(wc.model)["patch"],
        object_prob=lambda wc: lowres_arch(wc.model)["object_prob"],
        kwargs=lambda wc: as_json(lowres_arch(wc.model)["kwargs"]),
        iterations=LOWRES["iterations"],
        # LowRes: each stage gets the full count, as the authors trained both for 100 x 100.
        stages=lambda wc: (
            " --stage1-iterations {0} --stage2-iterations {0}".format(
                LOWRES["iterations"]
            )
            if wc.model == "lowres"
            else ""
        ),
        t=LOWRES["training"],
        prior=(
            f" --output-prior {LOWRES['training']['output_prior']}"
            if LOWRES["training"]["output_prior"]
            else ""
        ),
        seed=SEED,
        out_dir=lambda wc, output: os.path.dirname(output.bundle),
    shell:
        "python -m medrepro lowres-train --studies {input.studies} --table {input.table}"
        " --arch {wildcards.model} --model-kwargs '{params.kwargs}'"
        " --iterations {params.iterations}{params.stages}"
        " --batch-size {params.batch_size} --patch {params.patch}"
        " --object-prob {params.object_prob} --lr {params.t[lr]}"
        " --lr-final {params.t[lr_final]} --final-fraction {params.t[final_fraction]}{params.prior}"
        " --seed {params.seed} --threads {threads} --out-dir {params.out_dir} > {log} 2>&1"


rule lowres_export:
    input:
        bundle=f"{LOWRES_RESULTS}/{{dataset}}/models/{{model}}/model.pt",
        studies=f"{LOWRES_RESULTS}/{{dataset}}/preprocessed/studies.npz",
        table=f"{LOWRES_RESULTS}/{{dataset}}/preprocessed/studies.csv",
    output:
        directory(f"{LOWRES_RESULTS}/{{dataset}}/models/{{model}}/openvino"),
    log:
        "logs/lowres/{dataset}/export_{model}.log",
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        patch=lambda wc: lowres_arch(wc.model)["inference_patch"],
        subset_size=LOWRES["quantization"]["subset_size"],
        seed=SEED,
    shell:
        "python -m medrepro lowres-export --bundle {input.bundle} --studies {input.studies}"
        " --table {input.table} --patch {params.patch} --subset-size {params.subset_size}"
        " --threads {threads} --seed {params.seed} --out-dir {output} > {log} 2>&1"


# Timed runs take the whole machine (threads = all cores for the scheduler) so that no other job
# shares the cores; the process itself uses the thread count being measured.
rule lowres_predict:
    input:
        bundle=f"{LOWRES_RESULTS}/{{dataset}}/models/{{model}}/model.pt",
        ir=lowres_ir,
        studies=f"{LOWRES_RESULTS}/{{dataset}}/preprocessed/studies.npz",
        table=f"{LOWRES_RESULTS}/{{dataset}}/preprocessed/studies.csv",
    output:
        probabilities=f"{LOWRES_RESULTS}/{{dataset}}/predictions/{{model}}/{{runtime}}/probabilities.npz",
        times=f"{LOWRES_RESULTS}/{{dataset}}/predictions/{{model}}/{{runtime}}/times.csv",
        summary=f"{LOWRES_RESULTS}/{{dataset}}/predictions/{{model}}/{{runtime}}/summary.json",
    log:
        "logs/lowres/{dataset}/predict_{model}_{runtime}.log",
    conda:
        ENV
    threads: benchmark_threads()
    resources:
        mem_mb=benchmark_mem_limit_mb(),
        runtime=240,
    params:
        patch=lambda wc: lowres_arch(wc.model)["inference_patch"],
        stride=lambda wc: lowres_arch(wc.model)["inference_stride"],
        ir=lambda wc, input: f"--ir-dir {input.ir}" if input.ir else "",
        ram=LOWRES["inference"]["ram_limit_mb"],
        threads=THREADS,
        out_dir=lambda wc, output: os.path.dirname(output.summary),
    shell:
        "python -m medrepro lowres-infer --bundle {input.bundle} --runtime {wildcards.runtime}"
        " {params.ir} --studies {input.studies} --table {input.table} --split test"
        " --patch {params.patch} --stride {params.stride}"
        " --threads {params.threads} --ram-limit-mb {params.ram} --save-probabilities"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule lowres_time:
    input:
        bundle=f"{LOWRES_RESULTS}/{{dataset}}/models/{{model}}/model.pt",
        ir=lowres_ir,
        studies=f"{LOWRES_RESULTS}/{{dataset}}/preprocessed/studies.npz",
        table=f"{LOWRES_RESULTS}/{{dataset}}/preprocessed/studies.csv",
    output:
        times=f"{LOWRES_RESULTS}/{{dataset}}/timing/{{model}}/{{runtime}}_t{{nthreads}}/times.csv",
        summary=f"{LOWRES_RESULTS}/{{dataset}}/timing/{{model}}/{{runtime}}_t{{nthreads}}/summary.json",
    log:
        "logs/lowres/{dataset}/time_{model}_{runtime}_t{nthreads}.log",
    wildcard_constraints:
        nthreads=r"\d+",
    conda:
        ENV
    threads: benchmark_threads()
    resources:
        mem_mb=benchmark_mem_limit_mb(),
        runtime=240,
    params:
        patch=lambda wc: lowres_arch(wc.model)["inference_patch"],
        stride=lambda wc: lowres_arch(wc.model)["inference_stride"],
        ir=lambda wc, input: f"--ir-dir {input.ir}" if input.ir else "",
        ram=LOWRES["inference"]["ram_limit_mb"],
        n=LOWRES["inference"]["timing_studies"],
        out_dir=lambda wc, output: os.path.dirname(output.summary),
    shell:
        "python -m medrepro lowres-infer --bundle {input.bundle} --runtime {wildcards.runtime}"
        " {params.ir} --studies {input.studies} --table {input.table} --split test"
        " --patch {params.patch} --stride {params.stride}"
        " --threads {wildcards.nthreads} --ram-limit-mb {params.ram} --max-studies {params.n}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule lowres_evaluate:
    input:
        probabilities=f"{LOWRES_RESULTS}/{{dataset}}/predictions/{{model}}/{{runtime}}/probabilities.npz",
        studies=f"{LOWRES_RESULTS}/{{dataset}}/preprocessed/studies.npz",
        table=f"{LOWRES_RESULTS}/{{dataset}}/preprocessed/studies.csv",
        objects=f"{LOWRES_RESULTS}/{{dataset}}/preprocessed/objects.csv",
    output:
        multiext(
            f"{LOWRES_RESULTS}/{{dataset}}/evaluation/{{model}}/{{runtime}}/",
            "objects.csv",
            "froc.csv",
            "studies.csv",
            "summary.json",
        ),
    log:
        "logs/lowres/{dataset}/evaluate_{model}_{runtime}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        n_bootstrap=LOWRES["evaluation"]["n_bootstrap"],
        seed=SEED,
        out_dir=f"{LOWRES_RESULTS}/{{dataset}}/evaluation/{{model}}/{{runtime}}",
    shell:
        "python -m medrepro lowres-evaluate --probabilities {input.probabilities}"
        " --studies {input.studies} --table {input.table} --objects {input.objects}"
        " --split test --n-bootstrap {params.n_bootstrap} --seed {params.seed}"
        " --out-dir {params.out_dir} > {log} 2>&1"


LOWRES_FIGURES = [
    "fig1_time_vs_recall",
    "fig2_diameters",
    "fig3_qualitative",
    "froc",
    "openvino_speedup",
]


rule lowres_report:
    input:
        lowres_report_inputs(),
    output:
        report=f"{LOWRES_RESULTS}/report/report.md",
        claims=report(
            f"{LOWRES_RESULTS}/report/claims.csv",
            caption="../report/lowres_claims.rst",
            category="lowres",
            labels={"paper": "lowres", "table": "claims"},
        ),
        provenance=f"{LOWRES_RESULTS}/report/provenance.json",
        tables=[
            report(
                f"{LOWRES_RESULTS}/report/tables/{name}.csv",
                caption=f"../report/lowres_{name}.rst",
                category="lowres",
                labels={"paper": "lowres", "table": name},
            )
            for name in ["table1_luna16", "table2_metastases"]
        ]
        + [
            report(
                f"{LOWRES_RESULTS}/report/tables/{name}.csv",
                caption=f"../report/lowres_table_{name}.rst",
                category="lowres",
                labels={"paper": "lowres", "table": name},
            )
            for name in ["timing", "quality", "speedups"]
        ],
        figures=[
            report(
                f"{LOWRES_RESULTS}/report/figures/{name}.png",
                caption=f"../report/lowres_{name}.rst",
                category="lowres",
                labels={"paper": "lowres", "figure": name},
            )
            for name in LOWRES_FIGURES
        ],
    log:
        "logs/lowres/report.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        args=LOWRES_REPORT_ARGS,
        config=as_json(LOWRES | {"scale": SCALE}),
    shell:
        "python -m medrepro lowres-report {params.args} --config-json '{params.config}' > {log} 2>&1"


rule lowres:
    input:
        rules.lowres_report.output,


rule lowres_figures:
    # No output: runs whenever asked, re-rendering tables, figures and report from the results
    # already computed (nothing is retrained when they are up to date).
    input:
        lowres_report_inputs(),
    log:
        "logs/lowres/figures.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        args=LOWRES_REPORT_ARGS,
        config=as_json(LOWRES | {"scale": SCALE}),
    shell:
        "python -m medrepro lowres-report {params.args} --config-json '{params.config}' > {log} 2>&1"
