"""Stage ``lowres-train`` with tiny stand-in networks on a tiny studies container."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import medrepro.nets as nets
from medrepro.data.lowres_studies import (
    OBJECT_COLUMNS,
    STUDY_COLUMNS,
    Study,
    write_studies,
)
from medrepro.io.errors import InputError
from medrepro.nets import load_bundle
from medrepro.training import lowres
from medrepro.training.lowres import learning_rate, patch_shapes

torch.set_num_threads(1)

SHAPE = (24, 24, 24)


class TinySame(nn.Module):
    """Same-size stand-in: ``(N, 1, S) -> (N, 1, S)``."""

    divisor = 1
    margin = 0

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(1, width, 3, padding=1), nn.ReLU(), nn.Conv3d(width, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TinyValid(nn.Module):
    """Valid-convolution stand-in (DeepMedic-like): output side = input side - 2."""

    divisor = 1
    margin = 1

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv3d(1, 4, 3), nn.ReLU(), nn.Conv3d(4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TinyStage1(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 3, padding=1)
        self.norm = nn.BatchNorm3d(2)
        self.head = nn.Conv3d(2, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f2 = F.avg_pool3d(self.norm(self.conv(x)), 2)
        f4 = F.max_pool3d(f2, 2)
        f8 = F.avg_pool3d(f4, 2)
        return self.head(f8), f2, f4, f8


class TinyStage2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, f2: torch.Tensor, f4: torch.Tensor, f8: torch.Tensor):
        up = F.interpolate(f8, scale_factor=8, mode="nearest")
        return self.conv(torch.cat([x, up], dim=1))


class TinyTwoStage(nn.Module):
    """LowRes-like stand-in: ``stage1(x) -> (logits8, f2, f4, f8)``, ``stage2(x, f2, f4, f8)``."""

    divisor = 8
    margin = 0
    two_stage = True

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = TinyStage1()
        self.stage2 = TinyStage2()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits8, f2, f4, f8 = self.stage1(x)
        return logits8, self.stage2(x, f2, f4, f8)


@pytest.fixture(autouse=True)
def _stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(nets.MODELS, "tiny_same", TinySame)
    monkeypatch.setitem(nets.MODELS, "tiny_valid", TinyValid)
    monkeypatch.setitem(nets.MODELS, "tiny_two_stage", TinyTwoStage)


def _write_container(root: Path, n_train: int = 3, n_val: int = 1) -> tuple[Path, Path]:
    """Studies of noise (~0.1) with 1-2 bright cubes (1.0) each; the cubes are the mask."""
    rng = np.random.default_rng(0)
    studies, rows, objects = [], [], []
    splits = ["train"] * n_train + ["val"] * n_val
    for i, split in enumerate(splits):
        sid = f"s{i}"
        image = rng.uniform(0.0, 0.2, SHAPE).astype(np.float32)
        mask = np.zeros(SHAPE, np.uint8)
        n_obj = 1 + i % 2
        for k in range(n_obj):
            side = int(rng.integers(4, 7))
            z, y, x = rng.integers(0, SHAPE[0] - side, 3)
            mask[z : z + side, y : y + side, x : x + side] = 1
            objects.append(
                {
                    "study_id": sid, "split": split, "object": k + 1, "diameter_mm": side,
                    "volume_mm3": side**3, "kind": "unknown", "center_z": z + side / 2,
                    "center_y": y + side / 2, "center_x": x + side / 2, "inside_mask": True,
                }
            )  # fmt: skip
        image[mask > 0] = 1.0
        studies.append(Study(sid, image, mask, (1.0, 1.0, 1.0)))
        rows.append(
            {
                "study_id": sid, "split": split, "group": "", "shape_z": SHAPE[0],
                "shape_y": SHAPE[1], "shape_x": SHAPE[2], "spacing_z": 1.0, "spacing_y": 1.0,
                "spacing_x": 1.0, "n_objects": n_obj, "excluded": False, "reason": "",
            }
        )  # fmt: skip
    out = root / "preprocessed"
    write_studies(
        out,
        studies,
        pd.DataFrame(rows, columns=STUDY_COLUMNS),
        pd.DataFrame(objects, columns=OBJECT_COLUMNS),
    )
    return out / "studies.npz", out / "studies.csv"


def _argv(studies: Path, table: Path, out: Path, arch: str, **extra: object) -> list[str]:
    args = {
        "studies": studies, "table": table, "arch": arch, "iterations": 10, "batch-size": 2,
        "patch": 16, "object-prob": 0.5, "lr": 0.1, "lr-final": 0.01, "seed": 3,
        "threads": 1, "out-dir": out, "log-every": 5,
    }  # fmt: skip
    args.update({k.replace("_", "-"): v for k, v in extra.items()})
    return [item for k, v in args.items() for item in (f"--{k}", str(v))]


def test_learning_rate_drops_for_the_last_fraction() -> None:
    lrs = [learning_rate(s, 10, 1e-2, 1e-3, 0.2) for s in range(10)]
    assert lrs == [1e-2] * 8 + [1e-3] * 2
    assert learning_rate(7999, 10_000, 1e-2, 1e-3, 0.2) == 1e-2
    assert learning_rate(8000, 10_000, 1e-2, 1e-3, 0.2) == 1e-3


def test_patch_shapes_follow_margin_and_divisor() -> None:
    assert patch_shapes(TinyValid(), 9) == ((11, 11, 11), (9, 9, 9))
    assert patch_shapes(TinySame(), 16) == ((16, 16, 16), (16, 16, 16))
    with pytest.raises(ValueError, match="divisor 8"):
        patch_shapes(TinyTwoStage(), 12)


def test_loss_decreases_and_bundle_loads_back(tmp_path: Path) -> None:
    studies, table = _write_container(tmp_path)
    out = tmp_path / "model"
    argv = _argv(
        studies, table, out, "tiny_same", iterations=40, lr=0.3, lr_final=0.03,
        object_prob=1.0, log_every=10, val_every=20, val_patches=4,
    )  # fmt: skip
    assert lowres.main(argv) == 0
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == lowres.HISTORY_COLUMNS
    assert history["step"].tolist() == [10, 20, 30, 40]
    assert set(history["phase"]) == {"main"}
    assert history["loss"].iloc[-1] < 0.3 * history["loss"].iloc[0]
    assert history["lr"].tolist() == pytest.approx([0.3, 0.3, 0.3, 0.03])  # last fifth: lr-final
    assert history["val_dice"].notna().tolist() == [False, True, False, True]
    assert history["val_dice"].iloc[-1] > 0.8  # bright cubes are easy
    model, meta = load_bundle(out / "model.pt")
    assert meta["arch"] == "tiny_same" and meta["output_kind"] == "logits"
    assert meta["input_shape"] == [1, 1, 16, 16, 16]
    assert meta["extra"]["patch"] == 16 and meta["extra"]["margin"] == 0
    assert meta["extra"]["iterations"] == {"main": 40}
    x = torch.zeros(1, 1, 8, 8, 8)
    x[..., 2:6, 2:6, 2:6] = 1.0
    with torch.no_grad():
        prob = torch.sigmoid(model(x))[0, 0]
    assert prob[4, 4, 4] > 0.5 > prob[0, 0, 0]


def test_same_seed_same_weights(tmp_path: Path) -> None:
    studies, table = _write_container(tmp_path)
    states = []
    for run, seed in (("a", 3), ("b", 3), ("c", 4)):
        lowres.main(_argv(studies, table, tmp_path / run, "tiny_same", seed=seed))
        states.append(torch.load(tmp_path / run / "model.pt", weights_only=True)["state_dict"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_valid_convolution_net_gets_the_larger_input(tmp_path: Path) -> None:
    studies, table = _write_container(tmp_path)
    lowres.main(_argv(studies, table, tmp_path / "m", "tiny_valid", patch=9, iterations=3))
    _, meta = load_bundle(tmp_path / "m" / "model.pt")
    assert meta["input_shape"] == [1, 1, 11, 11, 11]
    assert meta["extra"]["margin"] == 1 and meta["extra"]["output_shape"] == [9, 9, 9]


def test_two_stage_training_freezes_stage1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    studies, table = _write_container(tmp_path)
    snapshots: dict[str, dict[str, torch.Tensor]] = {}
    run_phase = lowres._run_phase

    def spy(model: nn.Module, phase: str, **kwargs: object) -> None:
        before = {k: v.clone() for k, v in model.state_dict().items()}
        run_phase(model, phase, **kwargs)
        snapshots[phase] = before
        snapshots[phase + "_after"] = {k: v.clone() for k, v in model.state_dict().items()}

    monkeypatch.setattr(lowres, "_run_phase", spy)
    argv = _argv(
        studies, table, tmp_path / "m", "tiny_two_stage",
        stage1_iterations=4, stage2_iterations=6, stage2_object_prob=0.9,
    )  # fmt: skip
    lowres.main(argv)
    s1, s1_after = snapshots["stage1"], snapshots["stage1_after"]
    s2, s2_after = snapshots["stage2"], snapshots["stage2_after"]
    stage1_keys = [k for k in s1 if k.startswith("stage1.")]
    stage2_keys = [k for k in s1 if k.startswith("stage2.")]
    # stage 1 phase: stage 1 learns (weights and BN statistics), stage 2 untouched
    assert not torch.equal(s1["stage1.conv.weight"], s1_after["stage1.conv.weight"])
    assert not torch.equal(s1["stage1.norm.running_mean"], s1_after["stage1.norm.running_mean"])
    assert all(torch.equal(s1[k], s1_after[k]) for k in stage2_keys)
    # stage 2 phase: stage 1 frozen (weights and BN running statistics), stage 2 learns
    assert all(torch.equal(s2[k], s2_after[k]) for k in stage1_keys)
    assert not torch.equal(s2["stage2.conv.weight"], s2_after["stage2.conv.weight"])
    history = pd.read_csv(tmp_path / "m" / "history.csv")
    assert history["phase"].tolist() == ["stage1", "stage2", "stage2"]
    assert history["step"].tolist() == [4, 5, 6]
    _, meta = load_bundle(tmp_path / "m" / "model.pt")
    assert meta["extra"]["iterations"] == {"stage1": 4, "stage2": 6}
    assert meta["extra"]["object_prob"] == {"stage1": 0.5, "stage2": 0.9}


def test_two_stage_detection() -> None:
    assert lowres.is_two_stage(TinyTwoStage())
    assert lowres.is_two_stage(nets.build_model("lowres", n_features=2))
    assert not lowres.is_two_stage(nets.build_model("enet", width_mult=0.25))  # has .stage1 too
    assert not lowres.is_two_stage(TinySame())


def test_stage1_loss_uses_the_max_pooled_target() -> None:
    model = TinyTwoStage()
    x = torch.rand(2, 1, 16, 16, 16)
    y = torch.zeros(2, 1, 16, 16, 16)
    y[0, 0, 9, 1, 3] = 1  # one voxel -> low-res voxel (1, 0, 0) of item 0
    _, logits, target = lowres.phase_loss(model, "stage1", x, y)
    assert logits.shape == target.shape == (2, 1, 2, 2, 2)
    assert target.sum() == 1 and target[0, 0, 1, 0, 0] == 1


def test_no_train_studies_is_an_input_error(tmp_path: Path) -> None:
    studies, table = _write_container(tmp_path, n_train=0, n_val=2)
    with pytest.raises(InputError, match="no .*train studies"):
        lowres.main(_argv(studies, table, tmp_path / "m", "tiny_same"))
    assert not (tmp_path / "m").exists()


def test_missing_container_is_an_input_error(tmp_path: Path) -> None:
    _, table = _write_container(tmp_path)
    with pytest.raises(InputError, match="file not found"):
        lowres.main(_argv(tmp_path / "nope.npz", table, tmp_path / "m", "tiny_same"))


def test_output_prior_sets_the_logit_bias_of_every_network() -> None:
    """After init_output_prior(p) a zero input gives logits whose mean sigmoid is near p for
    the networks whose last layer has a bias (the BN output layers give exactly logit(p))."""
    import math

    from medrepro.nets import build_model
    from medrepro.training.lowres import init_output_prior

    for arch, kwargs in [
        ("unet3d", {"base_channels": 4}),
        ("deepmedic", {"widths": [4, 6, 6, 8], "head": 16}),
        ("mobilenetv2", {"width_mult": 0.25}),
        ("enet", {"width_mult": 0.25}),
        ("lowres", {"n_features": 4}),
    ]:
        model = build_model(arch, **kwargs)
        names = init_output_prior(model, 0.01)
        assert len(names) == (2 if arch == "lowres" else 1), (arch, names)  # one per stage
        for name in names:
            bias = dict(model.named_parameters())[name]
            assert math.isclose(float(torch.sigmoid(bias)), 0.01, rel_tol=1e-5), (arch, name)
        if arch in ("mobilenetv2", "enet"):  # a logit convolution starts at zero: p = prior
            model.eval()
            with torch.no_grad():
                p = torch.sigmoid(model(torch.rand(1, 1, 32, 32, 32)))
            torch.testing.assert_close(p, torch.full_like(p, 0.01), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="prior"):
        init_output_prior(build_model("unet3d", base_channels=4), 1.0)
