# Shared stage: speed and memory. Each configuration (framework x precision x mode x batch) runs
# in its own process with pinned threads and warm-up; the driver reports medians over repeats.
# The rule takes every core the scheduler has, so no other job runs beside a measurement.


rule benchmark_model:
    input:
        bundle="results/{paper}/models/{model}/model.pt",
        onnx="results/{paper}/models/{model}/export/model.onnx",
        ir_fp32="results/{paper}/models/{model}/export/model_fp32.xml",
        ir_int8="results/{paper}/models/{model}/int8/model_int8.xml",
    output:
        table="results/{paper}/benchmark/{model}.csv",
        raw="results/{paper}/benchmark/{model}_raw.csv",
        perf_counters="results/{paper}/benchmark/{model}_perf_counters.csv",
        sysinfo="results/{paper}/benchmark/{model}_sysinfo.json",
    log:
        "logs/{paper}/benchmark/{model}.log",
    conda:
        ENV
    threads: workflow.cores
    resources:
        mem_mb=benchmark_mem_limit_mb(),
        runtime=240,
    params:
        shape=lambda wc: " ".join(map(str, benchmark_settings(wc)["shape"])),
        batches=lambda wc: " ".join(map(str, benchmark_settings(wc)["batches"])),
        samples=lambda wc: benchmark_settings(wc)["samples"],
        warmup=lambda wc: benchmark_settings(wc)["warmup"],
        iterations=lambda wc: benchmark_settings(wc)["iterations"],
        repeats=lambda wc: benchmark_settings(wc)["repeats"],
        bench_threads=benchmark_threads(),
        mem_limit_mb=benchmark_mem_limit_mb(),
        timeout_s=config["benchmark"]["timeout_s"],
    shell:
        "python -m medrepro benchmark --model-name {wildcards.model} --bundle {input.bundle}"
        " --onnx {input.onnx} --ir-fp32 {input.ir_fp32} --ir-int8 {input.ir_int8}"
        " --shape {params.shape} --threads {params.bench_threads} --batches {params.batches}"
        " --samples {params.samples} --warmup {params.warmup} --iterations {params.iterations}"
        " --repeats {params.repeats} --nreq 4 --mem-limit-mb {params.mem_limit_mb}"
        " --timeout-s {params.timeout_s} --out {output.table} --raw-out {output.raw}"
        " --perf-counters-out {output.perf_counters} --sysinfo-out {output.sysinfo} > {log} 2>&1"


# Core scaling: the batch-1 synchronous configurations again, limited to {threads} threads
# (one run per thread count; the paper's Fig. 5 for brain extraction).
rule benchmark_scaling:
    input:
        bundle="results/{paper}/models/{model}/model.pt",
        onnx="results/{paper}/models/{model}/export/model.onnx",
        ir_fp32="results/{paper}/models/{model}/export/model_fp32.xml",
        ir_int8="results/{paper}/models/{model}/int8/model_int8.xml",
    output:
        table="results/{paper}/benchmark/scaling/{model}_t{threads}.csv",
        raw="results/{paper}/benchmark/scaling/{model}_t{threads}_raw.csv",
    log:
        "logs/{paper}/benchmark_scaling/{model}_t{threads}.log",
    wildcard_constraints:
        threads=r"[1-9][0-9]*",
    conda:
        ENV
    threads: workflow.cores
    resources:
        mem_mb=benchmark_mem_limit_mb(),
        runtime=240,
    params:
        shape=lambda wc: " ".join(map(str, benchmark_settings(wc)["shape"])),
        warmup=lambda wc: benchmark_settings(wc)["warmup"],
        iterations=lambda wc: benchmark_settings(wc)["iterations"],
        repeats=lambda wc: benchmark_settings(wc)["repeats"],
        mem_limit_mb=benchmark_mem_limit_mb(),
        timeout_s=config["benchmark"]["timeout_s"],
    shell:
        "python -m medrepro benchmark --model-name {wildcards.model} --bundle {input.bundle}"
        " --onnx {input.onnx} --ir-fp32 {input.ir_fp32} --ir-int8 {input.ir_int8}"
        " --shape {params.shape} --threads {wildcards.threads} --batches 1 --modes sync"
        " --samples 1 --warmup {params.warmup} --iterations {params.iterations}"
        " --repeats {params.repeats} --mem-limit-mb {params.mem_limit_mb}"
        " --timeout-s {params.timeout_s} --out {output.table} --raw-out {output.raw} > {log} 2>&1"
