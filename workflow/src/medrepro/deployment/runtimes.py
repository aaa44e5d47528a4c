"""One inference interface over PyTorch, ONNX Runtime and OpenVINO.

Every runner has ``infer(x) -> y``: ``x`` is a float32 batch ``(N, C, *spatial)`` and ``y`` the
model's *first* output as a NumPy array that the caller owns. Runners apply their thread limit
themselves (``torch.set_num_threads``, ONNX Runtime ``intra_op_num_threads``, OpenVINO
``INFERENCE_NUM_THREADS``); for strict pinning also call
:func:`medrepro.deployment.threads.pin_process` before the libraries are imported.

OpenVINO specifics (see the project's OpenVINO reference):

- ``precision`` sets ``INFERENCE_PRECISION_HINT`` explicitly. On CPUs with native BF16 the
  plugin's default is bf16, so an "f32" number without the hint would really be bf16.
  ``"int8"`` means an INT8 (FakeQuantize) IR run with the f32 hint: the operations NNCF left
  in float then run in f32, the precision NNCF validated them at.
- ``shape`` reshapes the model before compiling (models are exported at the training shape and
  benchmarked at the paper's shape, or at several batch sizes); shapes stay static.
- Inputs and outputs are shared with the runtime (no copies); :meth:`OpenVINORunner.infer`
  copies the output unless ``copy=False``.

Heavy libraries are imported inside the runners, so importing this module is cheap.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov
    import pandas as pd
    import torch

__all__ = [
    "Runner",
    "TorchRunner",
    "OnnxRunner",
    "OpenVINORunner",
    "UnsupportedConfigError",
    "make_runner",
    "ov_precision_hint",
    "cpu_supports",
    "BACKENDS",
    "PRECISIONS",
]

BACKENDS = ("pytorch", "onnxruntime", "openvino")
PRECISIONS = ("f32", "bf16", "int8")


class UnsupportedConfigError(RuntimeError):
    """The configuration cannot run on this machine or backend (e.g. bf16 without BF16 support)."""


def _as_input(x: np.ndarray) -> np.ndarray:
    """C-contiguous float32 view or copy of ``x`` (required for zero-copy sharing)."""
    return np.ascontiguousarray(x, dtype=np.float32)


class Runner:
    """Base class: ``infer(x) -> first output``; ``runner(x)`` is the same."""

    backend: str = ""
    precision: str = "f32"

    def infer(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Run one batch; return the first output (owned by the caller)."""
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.infer(x)


def _first_tensor(out: Any) -> Any:
    """First tensor of a model output that may be a tensor, a sequence or a mapping."""
    while isinstance(out, (list, tuple, dict)):
        if not out:
            raise ValueError("model returned an empty output")
        out = next(iter(out.values())) if isinstance(out, dict) else out[0]
    return out


class TorchRunner(Runner):
    """PyTorch eager inference under ``torch.inference_mode()``.

    Args:
        model: the network; it is put in eval mode.
        threads: intra-op threads (inter-op threads are set to 1 if still possible).
        precision: ``"f32"``, or ``"bf16"`` through ``torch.autocast("cpu", torch.bfloat16)``.
    """

    backend = "pytorch"

    def __init__(self, model: torch.nn.Module, threads: int = 1, precision: str = "f32") -> None:
        import torch

        from medrepro.deployment.threads import set_torch_threads

        if precision not in ("f32", "bf16"):
            raise UnsupportedConfigError(f"pytorch runs f32 or bf16, not {precision!r}")
        if precision == "bf16" and not cpu_supports("bf16"):
            raise UnsupportedConfigError("this CPU has no native BF16 support")
        set_torch_threads(threads)
        self.model = model.eval()
        self.precision = precision
        self.threads = threads
        self._torch = torch

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run one batch; returns a float32 array."""
        torch = self._torch
        with torch.inference_mode():
            tx = torch.from_numpy(_as_input(x))
            if self.precision == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = _first_tensor(self.model(tx))
            else:
                out = _first_tensor(self.model(tx))
            return out.float().numpy()


class OnnxRunner(Runner):
    """ONNX Runtime CPU session (sequential execution, ``threads`` intra-op threads)."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 1, precision: str = "f32") -> None:
        import onnxruntime as ort

        if precision != "f32":
            raise UnsupportedConfigError(
                f"onnxruntime runs the f32 ONNX model only, not {precision!r}"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.threads = threads

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run one batch (any shape allowed by the model's dynamic axes)."""
        return self.session.run([self.output_name], {self.input_name: _as_input(x)})[0]


def ov_precision_hint(precision: str) -> str:
    """OpenVINO ``INFERENCE_PRECISION_HINT`` for a benchmark precision (int8 IRs run with f32)."""
    hints = {"f32": "f32", "bf16": "bf16", "int8": "f32"}
    if precision not in hints:
        raise ValueError(f"precision must be one of {sorted(hints)}, got {precision!r}")
    return hints[precision]


def cpu_supports(precision: str) -> bool:
    """Whether the CPU runs ``precision`` natively (OpenVINO ``OPTIMIZATION_CAPABILITIES``)."""
    import openvino as ov

    caps = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return {"f32": "FP32", "bf16": "BF16", "int8": "INT8"}.get(precision, precision.upper()) in caps


class OpenVINORunner(Runner):
    """OpenVINO CPU inference with explicit precision, threads, streams and static shape.

    Args:
        model: path of an IR ``.xml`` (or ``.onnx``), or an ``ov.Model`` (cloned before reshaping).
        threads: ``INFERENCE_NUM_THREADS`` (all streams together).
        precision: ``"f32"``, ``"bf16"`` or ``"int8"`` (an INT8 IR run with the f32 hint).
        shape: reshape the first input to this static shape (batch first) before compiling.
        streams: ``NUM_STREAMS``; ``None`` lets the performance hint choose.
        hint: ``PERFORMANCE_HINT``, ``"LATENCY"`` or ``"THROUGHPUT"``.
        perf_count: enable per-node performance counters (:meth:`perf_counters`).

    Raises:
        UnsupportedConfigError: bf16 on a CPU without native BF16.
    """

    backend = "openvino"

    def __init__(
        self,
        model: str | Path | ov.Model,
        threads: int = 1,
        precision: str = "f32",
        shape: Sequence[int] | None = None,
        streams: int | None = 1,
        hint: str = "LATENCY",
        perf_count: bool = False,
    ) -> None:
        import openvino as ov

        hint_precision = ov_precision_hint(precision)
        self.core = ov.Core()
        if hint_precision == "bf16" and "BF16" not in self.core.get_property(
            "CPU", "OPTIMIZATION_CAPABILITIES"
        ):
            raise UnsupportedConfigError(
                "this CPU has no native BF16 support (OPTIMIZATION_CAPABILITIES)"
            )
        t0 = time.perf_counter()
        ov_model = (
            self.core.read_model(str(model)) if isinstance(model, (str, Path)) else model.clone()
        )
        if shape is not None:
            ov_model.reshape({ov_model.inputs[0]: ov.PartialShape([int(s) for s in shape])})
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": hint.upper(),
            "INFERENCE_PRECISION_HINT": hint_precision,
            "INFERENCE_NUM_THREADS": int(threads),
            "ENABLE_CPU_PINNING": True,
            "ENABLE_HYPER_THREADING": False,
            "PERF_COUNT": bool(perf_count),
        }
        if streams is not None:
            config["NUM_STREAMS"] = int(streams)
        self.compiled = self.core.compile_model(ov_model, "CPU", config)
        self.compile_seconds = time.perf_counter() - t0
        self.request = self.compiled.create_infer_request()
        self.precision = precision
        self.threads = threads
        self.perf_count = perf_count
        self.config = config
        self.async_latencies_ms: list[float] = []
        self._ov = ov

    @property
    def input_shape(self) -> list[int]:
        """Static shape of the first input."""
        return [int(d) for d in self.compiled.inputs[0].get_partial_shape().to_shape()]

    def properties(self) -> dict[str, Any]:
        """Effective compiled-model properties (streams, threads, precision, optimal requests)."""
        names = ("NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT",
                 "OPTIMAL_NUMBER_OF_INFER_REQUESTS")  # fmt: skip
        result = {}
        for name in names:
            try:
                value = self.compiled.get_property(name)
            except RuntimeError:
                continue
            result[name] = value.to_string() if hasattr(value, "to_string") else str(value)
        return result

    def infer(self, x: np.ndarray, copy: bool = True) -> np.ndarray:
        """Run one batch synchronously; inputs and outputs are shared with the runtime.

        Args:
            x: the batch; must match the compiled shape.
            copy: return a copy of the output. With ``False`` the array is a view of the
                request's output buffer, valid until the next inference (benchmark loops).
        """
        self.request.infer({0: _as_input(x)}, share_inputs=True, share_outputs=True)
        out = self.request.get_output_tensor(0).data
        return out.copy() if copy else out

    def infer_async(
        self, batches: Sequence[np.ndarray], nreq: int = 4, keep_outputs: bool = True
    ) -> list[np.ndarray]:
        """Run ``batches`` through an ``AsyncInferQueue`` of ``nreq`` requests.

        Outputs are copied inside the completion callback (request buffers are reused). Per-request
        latencies (submission to completion, queueing included) are left in
        ``self.async_latencies_ms``.

        Args:
            batches: input batches, each matching the compiled shape.
            nreq: number of parallel infer requests (``0``: the plugin's optimal number).
            keep_outputs: return the outputs in input order; with ``False`` each output is copied
                into a per-request scratch buffer (same copy cost, bounded memory) and ``[]`` is
                returned.
        """
        ov = self._ov
        queue = ov.AsyncInferQueue(self.compiled, int(nreq))
        results: list[np.ndarray | None] = [None] * len(batches)
        started = [0.0] * len(batches)
        done = [0.0] * len(batches)
        scratch: dict[int, np.ndarray] = {}

        def callback(request: Any, index: int) -> None:
            done[index] = time.perf_counter()
            data = request.get_output_tensor(0).data
            if keep_outputs:
                results[index] = data.copy()
            else:
                key = data.ctypes.data  # each request owns a fixed output buffer
                buf = scratch.get(key)
                if buf is None or buf.shape != data.shape:
                    buf = scratch[key] = np.empty_like(data)
                np.copyto(buf, data)

        queue.set_callback(callback)
        for i, batch in enumerate(batches):
            started[i] = time.perf_counter()
            queue.start_async({0: _as_input(batch)}, userdata=i, share_inputs=True)
        queue.wait_all()
        self.async_latencies_ms = [1000.0 * (d - s) for s, d in zip(started, done, strict=True)]
        return [r for r in results if r is not None] if keep_outputs else []

    def perf_counters(self) -> pd.DataFrame:
        """Executed time per node type of the last synchronous inference.

        Returns:
            DataFrame ``node_type, time_ms`` (sorted by time, descending).

        Raises:
            RuntimeError: the runner was created without ``perf_count=True``.
        """
        import pandas as pd

        if not self.perf_count:
            raise RuntimeError(
                "create the runner with perf_count=True to read performance counters"
            )
        rows = [
            {"node_type": info.node_type, "time_ms": info.real_time.total_seconds() * 1000.0}
            for info in self.request.profiling_info
            if info.status == info.Status.EXECUTED
        ]
        table = pd.DataFrame(rows, columns=["node_type", "time_ms"])
        table = table.groupby("node_type", as_index=False)["time_ms"].sum()
        return table.sort_values("time_ms", ascending=False, ignore_index=True)


def make_runner(
    backend: str,
    path_or_bundle: str | Path | Any,
    threads: int = 1,
    precision: str = "f32",
    **kwargs: Any,
) -> Runner:
    """Build the runner of ``backend``.

    Args:
        backend: ``pytorch``, ``onnxruntime`` or ``openvino``.
        path_or_bundle: a bundle ``.pt`` path or an ``nn.Module`` (pytorch), an ``.onnx`` path
            (onnxruntime), an IR ``.xml``/``.onnx`` path or an ``ov.Model`` (openvino).
        threads: thread limit of the runtime.
        precision: ``f32``, ``bf16`` or ``int8`` (see the runners).
        **kwargs: OpenVINO options (``shape``, ``streams``, ``hint``, ``perf_count``).
    """
    if backend == "pytorch":
        model = path_or_bundle
        if isinstance(model, (str, Path)):
            from medrepro.nets.bundle import load_bundle

            model, _ = load_bundle(model)
        return TorchRunner(model, threads=threads, precision=precision)
    if backend == "onnxruntime":
        return OnnxRunner(path_or_bundle, threads=threads, precision=precision)
    if backend == "openvino":
        return OpenVINORunner(path_or_bundle, threads=threads, precision=precision, **kwargs)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
