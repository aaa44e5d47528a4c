# Shared stage: post-training INT8 quantization with NNCF accuracy control, validated on the
# paper's own metric (the task registered under the paper's name in medrepro.tasks).


rule quantize_model:
    input:
        bundle="results/{paper}/models/{model}/model.pt",
        ir="results/{paper}/models/{model}/export/model_fp32.xml",
        dataset="results/{paper}/preprocessed/dataset.npz",
        splits="results/{paper}/preprocessed/splits.csv",
    output:
        ir=multiext("results/{paper}/models/{model}/int8/model_int8", ".xml", ".bin"),
        report="results/{paper}/models/{model}/int8/quantization.json",
    log:
        "logs/{paper}/quantize/{model}.log",
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        max_drop=lambda wc: quantization_settings(wc)["max_drop"],
        subset_size=lambda wc: quantization_settings(wc)["subset_size"],
    shell:
        "python -m medrepro quantize --bundle {input.bundle} --ir {input.ir} --task {wildcards.paper}"
        " --dataset {input.dataset} --splits {input.splits}"
        " --calibration-split train --validation-split val"
        " --max-drop {params.max_drop} --subset-size {params.subset_size}"
        " --mode accuracy_control --threads {threads}"
        " --out-dir results/{wildcards.paper}/models/{wildcards.model}/int8 > {log} 2>&1"


# The paper's other route: plain post-training quantization (`nncf.quantize`, no accuracy
# control), kept beside the accuracy-aware model so that both can be compared.
rule quantize_model_default:
    input:
        bundle="results/{paper}/models/{model}/model.pt",
        ir="results/{paper}/models/{model}/export/model_fp32.xml",
        dataset="results/{paper}/preprocessed/dataset.npz",
        splits="results/{paper}/preprocessed/splits.csv",
    output:
        ir=multiext(
            "results/{paper}/models/{model}/int8_default/model_int8", ".xml", ".bin"
        ),
        report="results/{paper}/models/{model}/int8_default/quantization.json",
    log:
        "logs/{paper}/quantize_default/{model}.log",
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        max_drop=lambda wc: quantization_settings(wc)["max_drop"],
        subset_size=lambda wc: quantization_settings(wc)["subset_size"],
    shell:
        "python -m medrepro quantize --bundle {input.bundle} --ir {input.ir} --task {wildcards.paper}"
        " --dataset {input.dataset} --splits {input.splits}"
        " --calibration-split train --validation-split val"
        " --max-drop {params.max_drop} --subset-size {params.subset_size}"
        " --mode default --threads {threads}"
        " --out-dir results/{wildcards.paper}/models/{wildcards.model}/int8_default > {log} 2>&1"
