"""lowres-infer: timed whole-volume inference with PyTorch and OpenVINO, output files, LowRes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import test_lowres_export

from medrepro.deployment.threads import THREAD_ENV_VARS
from medrepro.io.errors import InputError
from medrepro.tasks.lowres_infer import SUMMARY_KEYS, TIME_COLUMNS, main, predict_two_stage
from medrepro.transforms.lowres_components import upsample_nearest

# the stand-in networks, studies and their export are shared with test_lowres_export
registry = test_lowres_export.registry
container = test_lowres_export.container
exported = test_lowres_export.exported


@pytest.fixture
def restore_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo ``pin_process``: CPU affinity and thread environment variables."""
    for name in THREAD_ENV_VARS:
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    before = os.sched_getaffinity(0)
    yield
    os.sched_setaffinity(0, before)


def run_infer(
    out_dir: Path, ir_dir: Path, container: tuple[Path, Path], runtime: str, patch: int,
    stride: int, save: bool = True,
) -> Path:  # fmt: skip
    argv = ["--bundle", str(ir_dir.parent / "model.pt"), "--runtime", runtime, "--ir-dir",
            str(ir_dir), "--studies", str(container[0]), "--table", str(container[1]),
            "--patch", str(patch), "--stride", str(stride), "--threads", "1",
            "--ram-limit-mb", "100000", "--out-dir", str(out_dir)]  # fmt: skip
    assert main(argv + (["--save-probabilities"] if save else [])) == 0
    return out_dir


def _probabilities(out_dir: Path) -> dict[str, np.ndarray]:
    with np.load(out_dir / "probabilities.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.mark.usefixtures("restore_process")
def test_torch_and_openvino_agree_single_stage(
    exported: dict[str, Path],
    container: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    ir = exported["_tiny_net"]
    probs = {
        runtime: _probabilities(run_infer(tmp_path / runtime, ir, container, runtime, 8, 4))
        for runtime in ("torch", "openvino_fp32", "openvino_int8")
    }
    assert sorted(probs["torch"]) == ["te1", "te2"]
    for sid, shape in (("te1", (21, 19, 14)), ("te2", (16, 16, 16))):
        torch_p = probs["torch"][sid]
        assert torch_p.shape == shape and torch_p.dtype == np.float16
        assert 0.0 <= torch_p.min() and torch_p.max() <= 1.0 and torch_p.std() > 0
        diff = np.abs(probs["openvino_fp32"][sid].astype(np.float32) - torch_p)
        assert diff.max() < 1e-3
        assert np.abs(probs["openvino_int8"][sid].astype(np.float32) - torch_p).max() < 0.2

    times = pd.read_csv(tmp_path / "torch" / "times.csv")
    assert list(times.columns) == TIME_COLUMNS
    assert times["study_id"].tolist() == ["te1", "te2"]
    # te1 (21, 19, 14) at patch 8, stride 4: 5 x 4 x 3 patches
    assert times["n_patches"].tolist() == [60, 27] and times["voxels"].tolist() == [5586, 4096]
    assert (times["stage1_seconds"] == times["seconds"]).all() and (
        times["n_components"] == 0
    ).all()
    summary = json.loads((tmp_path / "openvino_fp32" / "summary.json").read_text())
    assert list(summary) == SUMMARY_KEYS
    assert summary["runtime"] == "openvino_fp32" and summary["model"] == "_tiny_net"
    assert summary["n_studies"] == 2 and summary["threads"] == 1
    assert summary["within_ram_limit"] is True and summary["peak_rss_mb"] > 10
    assert summary["mean_s"] > 0 and summary["patch"] == 8 and summary["stride"] == 4


@pytest.mark.usefixtures("restore_process")
def test_lowres_through_the_stage(
    exported: dict[str, Path],
    container: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    ir = exported["_tiny_lowres"]
    torch_out = run_infer(tmp_path / "torch", ir, container, "torch", 16, 8)
    ov_out = run_infer(tmp_path / "ov", ir, container, "openvino_fp32", 16, 8)
    times = pd.read_csv(torch_out / "times.csv")
    # te1 holds a bright cube: stage 1 fires there and nowhere in te2
    assert times.set_index("study_id")["n_components"].to_dict() == {"te1": 1, "te2": 0}
    assert (times["seconds"] >= times["stage1_seconds"]).all()
    # te1 padded to (24, 24, 16): 2 x 2 x 1 patches of 16 at stride 8; te2 is one patch
    assert times["n_patches"].tolist() == [4, 1]
    p_torch, p_ov = _probabilities(torch_out), _probabilities(ov_out)
    for sid in ("te1", "te2"):
        assert p_torch[sid].shape == {"te1": (21, 19, 14), "te2": (16, 16, 16)}[sid]
        assert np.abs(p_torch[sid].astype(np.float32) - p_ov[sid]).max() < 1e-3
    # te2 has no component: the output is the stage-1 probability, constant on 8-blocks
    te2 = p_torch["te2"].astype(np.float32)
    np.testing.assert_array_equal(te2, upsample_nearest(te2[::8, ::8, ::8], 8, te2.shape))


def test_two_stage_with_functions_known_answer() -> None:
    """Stage 1 fires on the first 8-block only; the detail output is 1 in its box (+ margin)."""
    image = np.zeros((24, 8, 8), np.float32)

    def stage1(x: np.ndarray) -> list[np.ndarray]:
        logits8 = np.full((1, 1, 1, 1, 1), 5.0 if x[0, 0, 0, 0, 0] == 0 else -5.0, np.float32)
        return [
            logits8,
            np.zeros((1, 1, 4, 4, 4)),
            np.zeros((1, 2, 2, 2, 2)),
            np.zeros((1, 4, 1, 1, 1)),
        ]

    image[8:] = 1.0  # patches at z 8 and 16 start with 1 -> stage 1 negative
    result = predict_two_stage(
        image, stage1, lambda x, *f: [np.full(x.shape, 50.0, np.float32)], patch=8, stride=8
    )
    assert result.n_components == 1 and result.n_patches == 3
    p = result.probabilities
    np.testing.assert_allclose(p[:16], 1.0)  # box = block 0 + 1 margin block
    np.testing.assert_allclose(p[16:], 1 / (1 + np.exp(5.0)), rtol=1e-6)


@pytest.mark.usefixtures("restore_process")
def test_missing_ir_is_input_error_without_output(
    exported: dict[str, Path],
    container: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty.parent / "model.pt").write_bytes(b"")
    with pytest.raises(InputError, match="net_int8.xml"):
        run_infer(tmp_path / "out", empty, container, "openvino_int8", 8, 4)
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="multiples of every output scale"):
        run_infer(tmp_path / "out", exported["_tiny_lowres"], container, "torch", 16, 12)
    assert not (tmp_path / "out").exists()
