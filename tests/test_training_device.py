"""Training device selection (``MEDREPRO_DEVICE``) and moving nested batches between devices."""

from __future__ import annotations

from collections import OrderedDict, namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch

from medrepro.nets.bundle import save_bundle
from medrepro.training import pretrain
from medrepro.training.device import ENV_VAR, module_device, to_device, training_device
from medrepro.training.loop import TrainConfig, fingerprint, fit, seed_everything

torch.set_num_threads(1)

HAS_CUDA = torch.cuda.is_available()
needs_no_cuda = pytest.mark.skipif(HAS_CUDA, reason="a CUDA device is visible")
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")

Pair = namedtuple("Pair", ["image", "target"])


# ---------------------------------------------------------------- training_device


@needs_no_cuda
@pytest.mark.parametrize("value", [None, "", "auto", " AUTO "])
def test_auto_is_the_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, value)
    assert training_device(log=False) == torch.device("cpu")


def test_auto_picks_cuda_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert training_device(log=False) == torch.device("cuda", 0)


def test_cpu_is_honoured_even_with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert training_device(log=False) == torch.device("cpu")


@needs_no_cuda
@pytest.mark.parametrize("value", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_requested_without_cuda_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(ENV_VAR, value)
    with pytest.raises(RuntimeError, match=rf"{ENV_VAR}=cuda.*CUDA is not available"):
        training_device()


def test_cuda_index_beyond_the_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "cuda:3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RuntimeError, match="only 1 CUDA device"):
        training_device(log=False)


@pytest.mark.parametrize("value", ["gpu", "cuda:x", "cuda:", "mps"])
def test_unknown_value(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(ENV_VAR, value)
    with pytest.raises(ValueError, match="expected auto, cpu, cuda or cuda:N"):
        training_device(log=False)


def test_the_choice_is_logged_on_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_VAR, "cpu")
    training_device()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"training device: cpu [{ENV_VAR}=cpu]\n"


# ---------------------------------------------------------------- to_device, module_device


def _nested() -> dict:
    state = OrderedDict(w=torch.ones(2, 2), n=torch.tensor(3, dtype=torch.int64))
    state._metadata = {"": {"version": 2}}  # type: ignore[attr-defined]
    return {
        "pair": (torch.zeros(2, dtype=torch.float16), [torch.arange(3), np.arange(4)]),
        "named": Pair(torch.ones(1, 2, dtype=torch.float64), torch.zeros(1, dtype=torch.bool)),
        "state": state,
        "label": "case_001",
        "count": 7,
    }


def test_to_device_moves_every_tensor_and_keeps_the_rest() -> None:
    obj = _nested()
    moved = to_device(obj, "meta")
    assert isinstance(moved["pair"], tuple) and isinstance(moved["pair"][1], list)
    assert isinstance(moved["named"], Pair)
    assert isinstance(moved["state"], OrderedDict)
    assert moved["state"]._metadata == {"": {"version": 2}}
    pairs = [
        (obj["pair"][0], moved["pair"][0]),
        (obj["pair"][1][0], moved["pair"][1][0]),
        (obj["named"].image, moved["named"].image),
        (obj["named"].target, moved["named"].target),
        (obj["state"]["w"], moved["state"]["w"]),
        (obj["state"]["n"], moved["state"]["n"]),
    ]
    for before, after in pairs:
        assert after.device.type == "meta"
        assert after.dtype == before.dtype and after.shape == before.shape
        assert before.device.type == "cpu"  # the input is not modified
    assert moved["pair"][1][1] is obj["pair"][1][1]  # NumPy arrays untouched
    assert moved["label"] == "case_001" and moved["count"] == 7


def test_to_device_on_the_same_device_copies_no_tensor() -> None:
    obj = _nested()
    kept = to_device(obj, torch.device("cpu"))
    assert kept["pair"][0] is obj["pair"][0]
    assert kept["pair"][1][0] is obj["pair"][1][0]
    assert kept["named"].image is obj["named"].image
    assert kept["state"]["w"] is obj["state"]["w"]
    assert to_device(obj["state"]["w"], "cpu") is obj["state"]["w"]


def test_module_device() -> None:
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(torch.nn.Linear(2, 2, device="meta")).type == "meta"
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")
    bn = torch.nn.BatchNorm1d(2, affine=False)  # buffers only
    assert module_device(bn.to("meta")).type == "meta"


# ---------------------------------------------------------------- trainers


def _fit(out_dir: Path, device: str | None = None) -> torch.nn.Module:
    """The loop on a small regression problem (as ``tests/test_training_loop.py``)."""
    seed_everything(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x = torch.randn(32, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1

    def batches(rng: np.random.Generator):
        order = rng.permutation(32)
        for start in range(0, 32, 8):
            idx = torch.as_tensor(order[start : start + 8])
            yield x[idx], y[idx]

    def validate(net: torch.nn.Module) -> tuple[float, float]:
        with torch.no_grad():
            out = net(x.to(module_device(net))).cpu()
        loss = float(torch.nn.functional.mse_loss(out, y))
        return loss, -loss

    config = TrainConfig(epochs=3, batch_size=8, lr=0.05, seed=3)
    model, _ = fit(
        model, batches, torch.nn.functional.mse_loss, validate, config, out_dir,
        fingerprint({"test": "device"}), device=device,
    )  # fmt: skip
    return model


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].device.type == "cpu" and sb[key].device.type == "cpu"
        assert torch.equal(sa[key], sb[key]), key


def test_fit_with_device_cpu_gives_the_default_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    default = _fit(tmp_path / "default")
    monkeypatch.setenv(ENV_VAR, "cpu")
    on_cpu = _fit(tmp_path / "cpu")
    _assert_same_weights(default, on_cpu)
    checkpoint = torch.load(tmp_path / "cpu" / "checkpoints" / "last.pt", weights_only=False)
    assert all(v.device.type == "cpu" for v in checkpoint["model"].values())
    assert all(v.device.type == "cpu" for v in checkpoint["best_state"].values())


def test_pretrain_with_device_cpu_gives_the_default_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kwargs = {"input_size": 64, "width": 0.125}
    run = {"iterations": 2, "batch_size": 4, "lr": 0.01, "seed": 5, "log": lambda _: None}
    monkeypatch.delenv(ENV_VAR, raising=False)
    default, _, h_default = pretrain.pretrain("tiny_yolov1", kwargs, **run)
    monkeypatch.setenv(ENV_VAR, "cpu")
    on_cpu, _, h_cpu = pretrain.pretrain("tiny_yolov1", kwargs, **run)
    _assert_same_weights(default, on_cpu)
    assert h_default["loss"].tolist() == h_cpu["loss"].tolist()


@needs_no_cuda
def test_trainer_fails_early_when_cuda_is_requested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        _fit(tmp_path)
    assert not (tmp_path / "checkpoints").exists()


@needs_cuda
def test_fit_on_cuda_returns_a_cpu_model_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, "cuda")
    model = _fit(tmp_path)
    assert module_device(model) == torch.device("cpu")
    save_bundle(
        tmp_path / "model.pt", model, arch="x", kwargs={}, input_shape=[1, 3],
        output_kind="logits",
    )  # fmt: skip
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(v.device.type == "cpu" for v in payload["state_dict"].values())
    resumed = _fit(tmp_path)  # every epoch done: resumes from the CPU checkpoint, trains nothing
    _assert_same_weights(model, resumed)
