"""Stage ``benchmark-worker``: time ONE configuration in this process; JSON result.

Run by the ``benchmark`` driver, one subprocess per configuration, so that thread pools,
compiled kernels and peak RSS never leak between configurations. The thread limit is applied at
the top of :func:`main`, *before* torch, onnxruntime or openvino are imported: OpenMP/BLAS
environment variables and the CPU affinity mask (OpenVINO sizes its pool from the mask).

Measurements:

- ``compile_time_s``: loading the model (bundle load for PyTorch, session creation for ONNX
  Runtime, read + reshape + compile for OpenVINO); ``first_inference_ms`` separately;
- sync: ``--warmup`` untimed runs, then ``--iterations`` timed runs of the same input array
  (``torch.inference_mode()``, OpenVINO with shared input/output tensors); latency statistics per
  iteration, ``fps = batch * iterations / total_time_s``;
- async (OpenVINO only): ``AsyncInferQueue`` with ``--nreq`` requests, ``PERFORMANCE_HINT``
  THROUGHPUT and ``NUM_STREAMS = min(nreq, threads)`` unless ``--streams`` is given (``0``: the
  plugin's choice); on 2 cores that is 2 streams x 1 thread, also the plugin's own choice.
  ``ceil(samples / batch)`` requests; latency is per request, submission to completion (queueing
  included); ``fps = batch * requests / total_time_s``;
- ``peak_rss_mb``: ``getrusage(RUSAGE_SELF).ru_maxrss`` after the timed phase (import, load and
  inference included); ``rss_after_import_mb`` and ``rss_after_load_mb`` show the phases.

``status`` is ``ok``, ``unsupported`` (e.g. bf16 without native BF16, async outside OpenVINO,
int8 outside OpenVINO) or ``error`` (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from medrepro.deployment.threads import pin_process

__all__ = ["latency_stats", "peak_rss_mb", "main"]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform != "darwin" else rss / 2**20


def latency_stats(latencies_ms: list[float]) -> dict[str, float]:
    """Median, p90, p99, mean, min, max, IQR and standard deviation of latencies (ms)."""
    import numpy as np

    a = np.asarray(latencies_ms, dtype=np.float64)
    if a.size == 0:
        return {}
    q25, q50, q75, q90, q99 = np.percentile(a, [25, 50, 75, 90, 99])
    return {
        "latency_median_ms": float(q50),
        "latency_p90_ms": float(q90),
        "latency_p99_ms": float(q99),
        "latency_mean_ms": float(a.mean()),
        "latency_min_ms": float(a.min()),
        "latency_max_ms": float(a.max()),
        "latency_iqr_ms": float(q75 - q25),
        "latency_std_ms": float(a.std()),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro benchmark-worker", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backend", choices=["pytorch", "onnxruntime", "openvino"], required=True)
    parser.add_argument("--precision", choices=["f32", "bf16", "int8"], default="f32")
    parser.add_argument("--mode", choices=["sync", "async"], default="sync")
    parser.add_argument("--model", type=Path, required=True, help="bundle .pt, .onnx or IR .xml")
    parser.add_argument(
        "--shape", type=int, nargs="+", required=True, help="input shape, batch first"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--nreq", type=int, default=4, help="async infer requests")
    parser.add_argument(
        "--streams",
        type=int,
        default=None,
        help="async NUM_STREAMS (default min(nreq, threads); 0: plugin)",
    )
    parser.add_argument("--warmup", type=int, default=2)
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--iterations", type=int, default=None, help="timed batches")
    count.add_argument(
        "--samples", type=int, default=None, help="timed samples (batches = ceil(samples/batch))"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON result (also printed on stdout)"
    )
    parser.add_argument(
        "--perf-counters", type=Path, default=None, help="OpenVINO sync: per-node-type CSV"
    )
    parser.add_argument("--perf-iterations", type=int, default=5)
    parser.add_argument(
        "--no-affinity", action="store_true", help="do not change the CPU affinity mask"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _load(args: argparse.Namespace, shape: list[int]) -> Any:
    """The runner of the configuration (raises UnsupportedConfigError when it cannot run)."""
    from medrepro.deployment.runtimes import UnsupportedConfigError, make_runner

    if args.mode == "async" and args.backend != "openvino":
        raise UnsupportedConfigError("async mode is implemented for OpenVINO only")
    if args.precision == "int8" and args.backend != "openvino":
        raise UnsupportedConfigError(f"int8 is not benchmarked with {args.backend}")
    if not args.model.exists():
        raise FileNotFoundError(f"{args.model}: model not found")
    if args.backend != "openvino":
        return make_runner(args.backend, args.model, threads=args.threads, precision=args.precision)
    if args.mode == "sync":
        options: dict[str, Any] = {"hint": "LATENCY", "streams": 1}
    else:
        streams = min(args.nreq, args.threads) if args.streams is None else args.streams
        options = {"hint": "THROUGHPUT", "streams": streams or None}
    return make_runner(
        "openvino",
        args.model,
        threads=args.threads,
        precision=args.precision,
        shape=shape,
        **options,
    )


def _perf_counters(args: argparse.Namespace, shape: list[int], x: Any) -> None:
    """Per-node-type time of a separate perf-count-enabled compile, averaged over a few runs."""
    import pandas as pd

    from medrepro.deployment.runtimes import OpenVINORunner
    from medrepro.io.atomic import write_csv

    runner = OpenVINORunner(args.model, args.threads, args.precision, shape=shape, perf_count=True)
    runner.infer(x, copy=False)
    tables = []
    for _ in range(max(1, args.perf_iterations)):
        runner.infer(x, copy=False)
        tables.append(runner.perf_counters())
    table = pd.concat(tables).groupby("node_type", as_index=False)["time_ms"].sum()
    table["time_ms"] /= len(tables)
    total = table["time_ms"].sum()
    table["share"] = table["time_ms"] / total if total > 0 else 0.0
    write_csv(table.sort_values("time_ms", ascending=False), args.perf_counters)


def _run(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Load, warm up and time the configuration; fill ``result``."""
    t0 = time.perf_counter()
    import numpy as np

    shape = [int(s) for s in args.shape]
    batch = shape[0]
    result["rss_after_import_mb"] = peak_rss_mb()
    t_load = time.perf_counter()
    runner = _load(args, shape)
    result["compile_time_s"] = time.perf_counter() - t_load
    result["import_time_s"] = t_load - t0
    result["rss_after_load_mb"] = peak_rss_mb()
    if hasattr(runner, "properties"):
        result["ov_properties"] = runner.properties()
    x = np.random.default_rng(args.seed).standard_normal(shape).astype(np.float32)
    is_ov = args.backend == "openvino"

    def infer() -> Any:
        return runner.infer(x, copy=False) if is_ov else runner.infer(x)

    t = time.perf_counter()
    y = infer()
    result["first_inference_ms"] = 1000.0 * (time.perf_counter() - t)
    result["output_shape"] = list(y.shape)
    if args.mode == "sync":
        iterations = (
            args.iterations
            if args.iterations is not None
            else math.ceil((args.samples or 10) / batch)
        )
        for _ in range(args.warmup):
            infer()
        latencies = []
        start = time.perf_counter()
        for _ in range(iterations):
            t = time.perf_counter()
            infer()
            latencies.append(1000.0 * (time.perf_counter() - t))
        total = time.perf_counter() - start
    else:
        iterations = (
            math.ceil(args.samples / batch) if args.samples is not None else (args.iterations or 10)
        )
        if args.warmup > 0:
            runner.infer_async([x] * max(args.warmup, args.nreq), args.nreq, keep_outputs=False)
        start = time.perf_counter()
        runner.infer_async([x] * iterations, args.nreq, keep_outputs=False)
        total = time.perf_counter() - start
        latencies = runner.async_latencies_ms
    result.update(latency_stats(latencies))
    result.update(
        iterations=iterations,
        samples=iterations * batch,
        total_time_s=total,
        fps=iterations * batch / total if total > 0 else None,
        peak_rss_mb=peak_rss_mb(),
        status="ok",
    )
    if args.perf_counters is not None and is_ov and args.mode == "sync":
        del runner
        _perf_counters(args, shape, x)


def main(argv: list[str] | None = None) -> int:
    """Run one benchmark configuration; return 0 (ok/unsupported) or 1 (error)."""
    args = _parser().parse_args(argv)
    cpus = pin_process(args.threads, affinity=not args.no_affinity)
    result: dict[str, Any] = {
        "status": "error",
        "backend": args.backend,
        "precision": args.precision,
        "mode": args.mode,
        "batch": args.shape[0],
        "shape": args.shape,
        "threads": args.threads,
        "nreq": args.nreq if args.mode == "async" else None,
        "model": str(args.model),
        "pid": os.getpid(),
        "cpus": cpus,
    }
    code = 0
    try:
        _run(args, result)
    except Exception as err:  # noqa: BLE001 - every failure becomes a status in the JSON
        from medrepro.deployment.runtimes import UnsupportedConfigError

        result["status"] = "unsupported" if isinstance(err, UnsupportedConfigError) else "error"
        result["message"] = f"{type(err).__name__}: {err}"
        if result["status"] == "error":
            traceback.print_exc(file=sys.stderr)
            code = 1
    text = json.dumps(result, default=str)
    if args.out is not None:
        from medrepro.io.atomic import write_text

        write_text(args.out, text + "\n")
    print(text, flush=True)
    return code
