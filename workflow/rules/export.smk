# Shared stage: PyTorch -> ONNX and OpenVINO IR (FP32 kept uncompressed, FP16), checked against
# PyTorch on held-out inputs of the paper's test split.


rule export_model:
    input:
        bundle="results/{paper}/models/{model}/model.pt",
        inputs="results/{paper}/preprocessed/inputs_test.npz",
    output:
        onnx="results/{paper}/models/{model}/export/model.onnx",
        ir_fp32=multiext(
            "results/{paper}/models/{model}/export/model_fp32", ".xml", ".bin"
        ),
        ir_fp16=multiext(
            "results/{paper}/models/{model}/export/model_fp16", ".xml", ".bin"
        ),
        parity="results/{paper}/models/{model}/export/parity.json",
    log:
        "logs/{paper}/export/{model}.log",
    conda:
        ENV
    threads: THREADS
    resources:
        mem_mb=6000,
        runtime=30,
    shell:
        "python -m medrepro export --bundle {input.bundle} --inputs {input.inputs}"
        " --out-dir results/{wildcards.paper}/models/{wildcards.model}/export"
        " --threads {threads} > {log} 2>&1"
