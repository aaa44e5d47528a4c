"""Stage ``benchmark``: latency, throughput and peak memory of every backend and precision.

Every configuration runs in its own subprocess (``python -m medrepro benchmark-worker``) with
OpenMP/BLAS thread variables set to ``--threads`` and, where ``taskset`` exists, pinned to CPUs
``0..threads-1``. Repeats are interleaved (the repeat loop is outside the configuration loop),
so slow drifts of a shared machine spread over all configurations instead of biasing one.

A watchdog polls the worker's RSS (children included) every 50 ms and kills it above
``--mem-limit-mb`` (status ``oom``: the paper's tables show a dash); a worker whose own peak RSS
(``ru_maxrss``) exceeds the limit between two polls is also marked ``oom``. ``--timeout-s`` gives
``timeout``, a non-zero exit ``error`` (stderr tail kept in the raw CSV).

Configurations (``--batches`` always includes 1):

- batch 1: pytorch/f32/sync, onnxruntime/f32/sync, openvino/{f32,bf16,int8}/sync and
  openvino/{f32,bf16,int8}/async with ``--nreq`` requests; sync runs time ``--iterations``
  batches, async runs ``--samples`` samples;
- batch sweep, for b > 1 in ``--batches``: pytorch/f32/sync, openvino/f32/sync and
  openvino/f32/async, each over ``--samples`` samples (``ceil(samples / b)`` batches).

Configurations whose model is not given (e.g. no ``--ir-int8``) are skipped. Outputs (all
atomic): the aggregated CSV (median over ok repeats; columns :data:`COLUMNS`), the raw CSV (one
row per repeat), OpenVINO per-node-type performance counters at batch 1 (first repeat) and
``sysinfo.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medrepro.deployment.threads import thread_env
from medrepro.io.atomic import write_csv, write_json
from medrepro.io.errors import InputError

__all__ = [
    "COLUMNS",
    "RAW_EXTRA_COLUMNS",
    "Config",
    "plan_configs",
    "run_config",
    "aggregate",
    "main",
]

#: aggregated CSV columns (docs/architecture.md), in order
COLUMNS = [
    "model", "backend", "precision", "mode", "batch", "threads", "nreq", "status",
    "latency_median_ms", "latency_p90_ms", "latency_mean_ms", "latency_min_ms", "total_time_s",
    "samples", "fps", "peak_rss_mb", "compile_time_s", "first_inference_ms", "repeats",
]  # fmt: skip
#: numeric columns of :data:`COLUMNS` that are aggregated (median over ok repeats)
NUMERIC = COLUMNS[8:18]
#: extra columns of the raw CSV
RAW_EXTRA_COLUMNS = [
    "repeat", "iterations", "latency_p99_ms", "latency_max_ms", "latency_iqr_ms", "import_time_s",
    "rss_after_import_mb", "rss_after_load_mb", "watchdog_rss_mb", "wall_s", "returncode",
    "ov_streams", "ov_threads", "ov_precision", "message",
]  # fmt: skip
_KEY = ["backend", "precision", "mode", "batch"]


@dataclass(frozen=True)
class Config:
    """One benchmark configuration (one worker process per repeat)."""

    backend: str
    precision: str
    mode: str
    batch: int
    model: Path
    count: tuple[str, int] = ("iterations", 10)
    perf_counters: bool = False

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.precision}/{self.mode}/b{self.batch}"


@dataclass
class Outcome:
    """Result of one worker run."""

    status: str
    result: dict[str, Any] = field(default_factory=dict)
    returncode: int | None = None
    wall_s: float = 0.0
    watchdog_rss_mb: float = 0.0
    message: str = ""


def plan_configs(
    models: dict[str, Path | None],
    batches: Sequence[int],
    iterations: int,
    samples: int,
    modes: Sequence[str] = ("sync", "async"),
) -> list[Config]:
    """The configurations to run, batch-1 set first, then the batch sweep (b > 1).

    Args:
        models: ``bundle``, ``onnx``, ``ir_fp32``, ``ir_int8`` paths (``None``: skip its configs).
        batches: batch sizes of the sweep.
        iterations: timed batches of the batch-1 sync configurations.
        samples: timed samples of async configurations and of the sweep.
        modes: the modes to run (``sync``, ``async``); a core-scaling run needs only ``sync``.
    """
    m = models
    ov_models = {"f32": m.get("ir_fp32"), "bf16": m.get("ir_fp32"), "int8": m.get("ir_int8")}
    configs: list[Config] = []

    def add(
        backend: str,
        precision: str,
        mode: str,
        batch: int,
        model: Path | None,
        count: tuple[str, int],
    ) -> None:
        if model is None or mode not in modes:
            return
        pc = backend == "openvino" and mode == "sync" and batch == 1
        configs.append(Config(backend, precision, mode, batch, Path(model), count, pc))

    add("pytorch", "f32", "sync", 1, m.get("bundle"), ("iterations", iterations))
    add("onnxruntime", "f32", "sync", 1, m.get("onnx"), ("iterations", iterations))
    for precision in ("f32", "bf16", "int8"):
        add("openvino", precision, "sync", 1, ov_models[precision], ("iterations", iterations))
    for precision in ("f32", "bf16", "int8"):
        add("openvino", precision, "async", 1, ov_models[precision], ("samples", samples))
    for b in sorted({int(b) for b in batches} - {1}):
        add("pytorch", "f32", "sync", b, m.get("bundle"), ("iterations", math.ceil(samples / b)))
        add("openvino", "f32", "sync", b, m.get("ir_fp32"), ("iterations", math.ceil(samples / b)))
        add("openvino", "f32", "async", b, m.get("ir_fp32"), ("samples", samples))
    return configs


def _tree_rss_mb(pid: int) -> float:
    """RSS of a process and its children, MB (0 if it is gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def worker_command(
    config: Config,
    shape: Sequence[int],
    threads: int,
    nreq: int,
    warmup: int,
    out: Path,
    perf_csv: Path | None,
) -> list[str]:
    """The worker's command line, prefixed by ``taskset -c 0-(threads-1)`` when available."""
    cmd = [
        sys.executable, "-m", "medrepro", "benchmark-worker",
        "--backend", config.backend, "--precision", config.precision, "--mode", config.mode,
        "--model", str(config.model), "--shape", *[str(config.batch), *map(str, shape[1:])],
        "--threads", str(threads), "--nreq", str(nreq), "--warmup", str(warmup),
        f"--{config.count[0]}", str(config.count[1]), "--out", str(out),
    ]  # fmt: skip
    if perf_csv is not None:
        cmd += ["--perf-counters", str(perf_csv)]
    taskset = shutil.which("taskset")
    if taskset and threads <= (os.cpu_count() or 1):
        cmd = [taskset, "-c", f"0-{threads - 1}", *cmd]
    return cmd


def _kill(proc: subprocess.Popen) -> None:
    """Kill the worker's process group (it was started in its own session)."""
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def run_config(
    config: Config,
    shape: Sequence[int],
    threads: int,
    nreq: int,
    warmup: int,
    mem_limit_mb: float | None,
    timeout_s: float,
    workdir: Path,
    perf_csv: Path | None = None,
    poll_s: float = 0.05,
) -> Outcome:
    """Run one configuration in a watched subprocess."""
    out = Path(tempfile.mkstemp(prefix="worker.", suffix=".json", dir=workdir)[1])
    out.unlink()
    cmd = worker_command(config, shape, threads, nreq, warmup, out, perf_csv)
    env = {**os.environ, **thread_env(threads), "PYTHONUNBUFFERED": "1"}
    err_path = workdir / f"{out.stem}.stderr"
    start = time.perf_counter()
    peak = 0.0
    status = None
    with open(err_path, "w+b") as err_file:
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=err_file, start_new_session=True
        )
        while proc.poll() is None:
            rss = _tree_rss_mb(proc.pid)
            peak = max(peak, rss)
            if mem_limit_mb is not None and rss > mem_limit_mb:
                status = "oom"
            elif time.perf_counter() - start > timeout_s:
                status = "timeout"
            if status:
                _kill(proc)
                break
            time.sleep(poll_s)
        wall = time.perf_counter() - start
        err_file.seek(0)
        stderr_tail = err_file.read().decode(errors="replace")[-2000:]
    result: dict[str, Any] = {}
    if out.exists():
        try:
            result = json.loads(out.read_text())
        except json.JSONDecodeError:
            result = {}
        out.unlink()
    err_path.unlink(missing_ok=True)
    outcome = Outcome(status or "error", result, proc.returncode, wall, peak)
    if status == "oom":
        outcome.message = f"RSS {peak:.0f} MB > limit {mem_limit_mb:.0f} MB"
    elif status == "timeout":
        outcome.message = f"killed after {timeout_s:.0f} s"
    elif result.get("status") in ("ok", "unsupported") and proc.returncode == 0:
        outcome.status = result["status"]
        outcome.message = result.get("message", "")
        if (
            mem_limit_mb is not None
            and outcome.status == "ok"
            and result.get("peak_rss_mb", 0) > mem_limit_mb
        ):
            outcome.status = "oom"
            outcome.message = (
                f"peak RSS {result['peak_rss_mb']:.0f} MB > limit {mem_limit_mb:.0f} MB"
            )
    else:
        outcome.message = (result.get("message", "") + "\n" + stderr_tail).strip()[-2000:]
    return outcome


def _raw_row(
    model_name: str, config: Config, threads: int, nreq: int, repeat: int, outcome: Outcome
) -> dict[str, Any]:
    res = outcome.result if outcome.status == "ok" else {}
    props = outcome.result.get("ov_properties") or {}
    row: dict[str, Any] = {
        "model": model_name,
        "backend": config.backend,
        "precision": config.precision,
        "mode": config.mode,
        "batch": config.batch,
        "threads": threads,
        "nreq": nreq if config.mode == "async" else None,
        "status": outcome.status,
        **{k: res.get(k) for k in NUMERIC},
        "repeats": 1,
        "repeat": repeat,
        "iterations": res.get("iterations"),
        **{
            k: res.get(k)
            for k in ("latency_p99_ms", "latency_max_ms", "latency_iqr_ms", "import_time_s")
        },
        **{k: res.get(k) for k in ("rss_after_import_mb", "rss_after_load_mb")},
        "watchdog_rss_mb": round(outcome.watchdog_rss_mb, 1),
        "wall_s": round(outcome.wall_s, 3),
        "returncode": outcome.returncode,
        "ov_streams": props.get("NUM_STREAMS"),
        "ov_threads": props.get("INFERENCE_NUM_THREADS"),
        "ov_precision": props.get("INFERENCE_PRECISION_HINT"),
        "message": outcome.message,
    }
    return row


def aggregate(raw: pd.DataFrame) -> pd.DataFrame:
    """Median over the ok repeats of each configuration; :data:`COLUMNS` exactly.

    A configuration is ``ok`` if any repeat is; otherwise it takes the most frequent status of
    its repeats (ties: the first seen) and its numbers are empty. ``repeats`` counts ok repeats.
    """
    rows = []
    group_cols = ["model", *_KEY, "threads"]
    for _, group in raw.groupby(group_cols, sort=False, dropna=False):
        first = group.iloc[0]
        ok = group[group["status"] == "ok"]
        row = {c: first[c] for c in ["model", *_KEY, "threads", "nreq"]}
        if len(ok):
            row.update(status="ok", repeats=len(ok))
            row.update({c: pd.to_numeric(ok[c], errors="coerce").median() for c in NUMERIC})
        else:
            row.update(status=group["status"].value_counts(sort=True).index[0], repeats=0)
            row.update(dict.fromkeys(NUMERIC))
        rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("batch", "threads"):
        table[col] = table[col].astype(int)
    table["nreq"] = table["nreq"].astype("Int64")
    table["repeats"] = table["repeats"].astype(int)
    return table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medrepro benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--bundle", type=Path, default=None, help="PyTorch bundle (.pt)")
    parser.add_argument("--onnx", type=Path, default=None)
    parser.add_argument(
        "--ir-fp32", type=Path, default=None, help="FP32 IR (also run with the bf16 hint)"
    )
    parser.add_argument("--ir-int8", type=Path, default=None)
    parser.add_argument(
        "--shape",
        type=int,
        nargs="+",
        required=True,
        help="input shape, batch first (e.g. 1 1 128 128 64)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--samples", type=int, default=20, help="samples per async / batch-sweep configuration"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--iterations", type=int, default=10, help="timed batches per batch-1 sync configuration"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nreq", type=int, default=4)
    parser.add_argument(
        "--modes", nargs="+", choices=["sync", "async"], default=["sync", "async"],
        help="inference modes to run (async: --nreq parallel requests, OpenVINO only)",
    )  # fmt: skip
    parser.add_argument("--mem-limit-mb", type=float, default=None)
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    parser.add_argument("--out", type=Path, required=True, help="aggregated CSV")
    parser.add_argument("--raw-out", type=Path, required=True)
    parser.add_argument("--perf-counters-out", type=Path, default=None)
    parser.add_argument("--sysinfo-out", type=Path, default=None)
    return parser


def _check_args(args: argparse.Namespace) -> dict[str, Path | None]:
    models = {
        "bundle": args.bundle,
        "onnx": args.onnx,
        "ir_fp32": args.ir_fp32,
        "ir_int8": args.ir_int8,
    }
    for path in models.values():
        if path is not None and not path.is_file():
            raise InputError(path, "model file not found")
    if all(p is None for p in models.values()):
        raise InputError(args.out, "no model given (--bundle, --onnx, --ir-fp32, --ir-int8)")
    if len(args.shape) < 3 or min(args.shape) < 1:
        raise InputError(
            args.out, f"--shape must be N C *spatial with positive sizes, got {args.shape}"
        )
    if args.threads < 1 or args.repeats < 1:
        raise InputError(args.out, "--threads and --repeats must be >= 1")
    return models


def _perf_table(perf_files: dict[str, Path]) -> pd.DataFrame:
    tables = []
    for precision, path in perf_files.items():
        if path.exists():
            table = pd.read_csv(path)
            table.insert(0, "precision", precision)
            tables.append(table[["precision", "node_type", "time_ms", "share"]])
    if not tables:
        return pd.DataFrame(columns=["precision", "node_type", "time_ms", "share"])
    return pd.concat(tables, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    """Run the ``benchmark`` stage."""
    args = _parser().parse_args(argv)
    models = _check_args(args)
    configs = plan_configs(models, args.batches, args.iterations, args.samples, args.modes)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medrepro-bench-") as tmp:
        workdir = Path(tmp)
        perf_files: dict[str, Path] = {}
        for repeat in range(args.repeats):
            for i, config in enumerate(configs):
                perf_csv = None
                if repeat == 0 and config.perf_counters and args.perf_counters_out is not None:
                    perf_csv = perf_files[config.precision] = (
                        workdir / f"perf_{config.precision}.csv"
                    )
                outcome = run_config(
                    config, args.shape, args.threads, args.nreq, args.warmup,
                    args.mem_limit_mb, args.timeout_s, workdir, perf_csv,
                )  # fmt: skip
                rows.append(
                    _raw_row(args.model_name, config, args.threads, args.nreq, repeat, outcome)
                )
                lat = outcome.result.get("latency_median_ms") if outcome.status == "ok" else None
                detail = (
                    f"{lat:.2f} ms, {outcome.result.get('fps', 0):.2f} fps"
                    if lat is not None
                    else outcome.message[:120]
                )
                print(
                    f"[benchmark] repeat {repeat + 1}/{args.repeats} config {i + 1}/{len(configs)} "
                    f"{config.label}: {outcome.status} ({detail}) [{outcome.wall_s:.1f} s]",
                    file=sys.stderr,
                    flush=True,
                )
        raw = pd.DataFrame(rows, columns=[*COLUMNS, *RAW_EXTRA_COLUMNS])
        write_csv(raw, args.raw_out)
        write_csv(aggregate(raw), args.out)
        if args.perf_counters_out is not None:
            write_csv(_perf_table(perf_files), args.perf_counters_out)
    if args.sysinfo_out is not None:
        from medrepro.benchmark.sysinfo import system_info

        info = system_info()
        info["benchmark"] = {
            "threads": args.threads,
            "shape": args.shape,
            "repeats": args.repeats,
            "taskset": shutil.which("taskset") is not None,
            "mem_limit_mb": args.mem_limit_mb,
            "seconds": time.perf_counter() - started,
        }
        write_json(args.sysinfo_out, info)
    print(
        f"[benchmark] {len(configs)} configurations x {args.repeats} repeats in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    return 0
