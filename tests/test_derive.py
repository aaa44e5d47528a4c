"""Stage ``derive``: the deconvolution hourglass built from the trained trilinear one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medrepro.cli import main
from medrepro.nets import build_model
from medrepro.nets.bundle import load_bundle, save_bundle
from medrepro.training.derive import derive_model

KWARGS = {"in_channels": 1, "n_landmarks": 4, "width": 16, "depth": 2, "n_stacks": 2}


@pytest.fixture()
def parent(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("stacked_hourglass", upsample="trilinear", **KWARGS)
    path = tmp_path / "hourglass" / "model.pt"
    save_bundle(path, model, arch="stacked_hourglass", kwargs={**KWARGS, "upsample": "trilinear"},
                input_shape=[1, 1, 16, 16, 8], output_kind="heatmaps", extra={"heatmap_stride": 2})  # fmt: skip
    (path.parent / "history.csv").write_text(
        "epoch,train_loss,val_loss,val_metric,seconds\n1,1,1,-1,1\n"
    )
    return path


def test_every_trained_weight_is_carried_over(parent: Path) -> None:
    trained, _ = load_bundle(parent)
    derived, meta, new = derive_model(parent, {"upsample": "deconv", "upsample_learnable": False})
    assert meta["kwargs"]["upsample"] == "deconv"
    # one fixed interpolation kernel per upsampling: depth 2 x 2 stacks
    assert sorted(new) == sorted(
        f"hourglasses.{s}.{level}up.up.weight" for s in range(2) for level in ("", "inner.")
    )
    derived_state = derived.state_dict()
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(derived_state[name], value)


def test_outputs_close_to_the_trilinear_parent(parent: Path) -> None:
    trained, _ = load_bundle(parent)
    derived, _, _ = derive_model(parent, {"upsample": "deconv", "upsample_learnable": False})
    x = torch.randn(1, 1, 16, 16, 8)
    with torch.inference_mode():
        a, b = trained(x), derived(x)
    # identical inside, different only where the interpolation meets the border
    assert 0 < float((a - b).abs().max()) < 0.5
    assert float((a - b).abs().mean()) < 0.05


def test_learnable_kernel_would_be_untrained(parent: Path) -> None:
    with pytest.raises(ValueError, match="untrained"):
        derive_model(parent, {"upsample": "deconv", "upsample_learnable": True})


def test_cli_writes_bundle_and_history(parent: Path, tmp_path: Path) -> None:
    out = tmp_path / "hourglass_deconv"
    overrides = '{"upsample": "deconv", "upsample_learnable": false}'
    assert (
        main(["derive", "--parent", str(parent), "--overrides", overrides, "--out-dir", str(out)])
        == 0
    )
    model, meta = load_bundle(out / "model.pt")
    assert meta["extra"]["derived_from"] == str(parent)
    assert (out / "history.csv").read_text() == (parent.parent / "history.csv").read_text()
