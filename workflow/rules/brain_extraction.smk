# Paper 001 (Thakur et al. 2022, BrainMaGe): brain extraction on multi-contrast MRI and its
# OpenVINO deployment. Subjects (NIfTI or DICOM) -> LPS -> N4 (registration only) -> rigid
# registration to an atlas, one resampling -> 3D ResU-Net -> ONNX / IR / INT8 -> native-space
# Dice and HD95, speed, memory and core scaling -> report. Design: docs/brain_extraction.md.


checkpoint brain_phantoms:
    output:
        directory(BRAIN_PHANTOMS),
    log:
        "logs/brain_extraction/phantoms.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        n_subjects=BRAIN["phantoms"]["n_subjects"],
        spacing_mm=BRAIN["phantoms"]["spacing_mm"],
        seed=SEED,
    shell:
        "python -m medrepro brain-phantoms --out-dir {output} --n-subjects {params.n_subjects}"
        " --spacing-mm {params.spacing_mm} --seed {params.seed} > {log} 2>&1"


rule brain_atlas:
    output:
        t1=f"{BRAIN_RESULTS}/atlas/atlas_t1.nii.gz",
        mask=f"{BRAIN_RESULTS}/atlas/atlas_mask.nii.gz",
    log:
        "logs/brain_extraction/atlas.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        spacing_mm=BRAIN["atlas_spacing_mm"],
        atlas=brain_atlas_args(),
        out_dir=lambda wc, output: os.path.dirname(output.t1),
    shell:
        "python -m medrepro brain-atlas --out-dir {params.out_dir}"
        " --spacing-mm {params.spacing_mm} {params.atlas} > {log} 2>&1"


rule brain_convert:
    input:
        cohort=brain_cohort(),
    output:
        directory(f"{BRAIN_RESULTS}/native/{{subject}}"),
    log:
        "logs/brain_extraction/convert/{subject}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        modalities=" ".join(BRAIN["modalities"]),
    shell:
        "python -m medrepro brain-convert --cohort {input.cohort} --subject {wildcards.subject}"
        " --modalities {params.modalities} --out-dir {output} > {log} 2>&1"


rule brain_register:
    input:
        native=f"{BRAIN_RESULTS}/native/{{subject}}",
        atlas_t1=rules.brain_atlas.output.t1,
        atlas_mask=rules.brain_atlas.output.mask,
    output:
        directory(f"{BRAIN_RESULTS}/registered/{{subject}}"),
    log:
        "logs/brain_extraction/register/{subject}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        modalities=" ".join(BRAIN["modalities"]),
        reference=BRAIN["reference_modality"],
        qc_min_dice=BRAIN["qc_min_dice"],
        seed=SEED,
    shell:
        "python -m medrepro brain-register --native-dir {input.native}"
        " --subject {wildcards.subject} --atlas-t1 {input.atlas_t1}"
        " --atlas-mask {input.atlas_mask} --modalities {params.modalities}"
        " --reference {params.reference} --qc-min-dice {params.qc_min_dice}"
        " --seed {params.seed} --threads {threads} --out-dir {output} > {log} 2>&1"


rule brain_dataset:
    input:
        registered=brain_registered_dirs,
    output:
        dataset=f"{BRAIN_RESULTS}/preprocessed/dataset.npz",
        cases=f"{BRAIN_RESULTS}/preprocessed/cases.csv",
        qc=f"{BRAIN_RESULTS}/preprocessed/qc.csv",
    log:
        "logs/brain_extraction/dataset.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        root=f"{BRAIN_RESULTS}/registered",
        subjects=lambda wc, input: " ".join(
            os.path.basename(d) for d in input.registered
        ),
        shape=" ".join(map(str, BRAIN["input_shape"])),
        modalities=" ".join(BRAIN["modalities"]),
        out_dir=lambda wc, output: os.path.dirname(output.dataset),
    shell:
        "python -m medrepro brain-dataset --registered-root {params.root}"
        " --subjects {params.subjects} --input-shape {params.shape}"
        " --modalities {params.modalities} --out-dir {params.out_dir} > {log} 2>&1"


rule brain_evaluate:
    input:
        bundle=f"{BRAIN_RESULTS}/models/{{model}}/model.pt",
        onnx=f"{BRAIN_RESULTS}/models/{{model}}/export/model.onnx",
        ir_fp32=f"{BRAIN_RESULTS}/models/{{model}}/export/model_fp32.xml",
        ir_int8=f"{BRAIN_RESULTS}/models/{{model}}/int8/model_int8.xml",
        ir_int8_default=f"{BRAIN_RESULTS}/models/{{model}}/int8_default/model_int8.xml",
        dataset=f"{BRAIN_RESULTS}/preprocessed/dataset.npz",
        splits=f"{BRAIN_RESULTS}/preprocessed/splits.csv",
        registered=brain_registered_dirs,
        native=brain_native_dirs,
    output:
        table=f"{BRAIN_RESULTS}/models/{{model}}/evaluation.csv",
        masks=directory(f"{BRAIN_RESULTS}/models/{{model}}/masks"),
    log:
        "logs/brain_extraction/evaluate/{model}.log",
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        threshold=BRAIN["threshold"],
        registered=f"{BRAIN_RESULTS}/registered",
        native=f"{BRAIN_RESULTS}/native",
    shell:
        "python -m medrepro brain-evaluate --bundle {input.bundle} --onnx {input.onnx}"
        " --ir-fp32 {input.ir_fp32} --ir-int8 {input.ir_int8}"
        " --ir-int8-default {input.ir_int8_default} --dataset {input.dataset}"
        " --splits {input.splits} --split test --registered-root {params.registered}"
        " --native-root {params.native} --threshold {params.threshold}"
        " --threads {threads} --out {output.table} --masks-dir {output.masks} > {log} 2>&1"


rule brain_report:
    input:
        brain_report_inputs(),
        native=brain_native_dirs,
    output:
        report=f"{BRAIN_RESULTS}/report.md",
        claims=report(
            f"{BRAIN_RESULTS}/claims.csv",
            caption="../report/brain_extraction_claims.rst",
            category="brain_extraction",
            labels={"paper": "brain_extraction", "table": "claims"},
        ),
        provenance=f"{BRAIN_RESULTS}/provenance.json",
        tables=[
            report(
                f"{BRAIN_RESULTS}/tables/{name}.csv",
                caption=f"../report/brain_extraction_table_{name}.rst",
                category="brain_extraction",
                labels={"paper": "brain_extraction", "table": name},
            )
            for name in [
                "table4_summary",
                "routes",
                "quantization",
                "core_scaling",
                "qc",
                "per_modality",
            ]
        ],
        figures=[
            report(
                f"{BRAIN_RESULTS}/figures/{name}.png",
                caption=f"../report/brain_extraction_{name}.rst",
                category="brain_extraction",
                labels={"paper": "brain_extraction", "figure": name},
            )
            for name in [
                "fig4_qualitative",
                "fig5_core_scaling",
                "qc_registration",
                "dice_by_config",
                "speed_memory",
            ]
        ],
    log:
        "logs/brain_extraction/report.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        args=BRAIN_REPORT_ARGS,
        config=as_json(config["brain_extraction"] | {"scale": SCALE}),
    shell:
        "python -m medrepro brain-report {params.args} --config-json '{params.config}' > {log} 2>&1"


rule brain_extraction:
    input:
        rules.brain_report.output,


rule brain_extraction_figures:
    # No output: runs whenever asked, re-rendering tables, figures and report from the
    # results already computed (nothing is retrained when they are up to date).
    input:
        brain_report_inputs(),
        native=brain_native_dirs,
    log:
        "logs/brain_extraction/figures.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        args=BRAIN_REPORT_ARGS,
        config=as_json(config["brain_extraction"] | {"scale": SCALE}),
    shell:
        "python -m medrepro brain-report {params.args} --config-json '{params.config}' > {log} 2>&1"
