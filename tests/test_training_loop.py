"""The training loop: seeded, and resumable after an interruption with identical results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medrepro.training.loop import TrainConfig, fingerprint, fit, seed_everything


class Interrupted(RuntimeError):
    pass


def _problem(fail_at_epoch: int | None = None):
    """A linear regression problem; ``batches`` raises at the start of ``fail_at_epoch``."""
    seed_everything(0)
    model = torch.nn.Linear(3, 1)
    x = torch.randn(32, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1
    calls = {"epoch": 0}

    def batches(rng: np.random.Generator):
        if fail_at_epoch is not None and calls["epoch"] == fail_at_epoch:
            raise Interrupted
        calls["epoch"] += 1
        order = rng.permutation(32)
        for start in range(0, 32, 8):
            idx = torch.as_tensor(order[start : start + 8])
            yield x[idx], y[idx]

    def validate(net: torch.nn.Module) -> tuple[float, float]:
        with torch.no_grad():
            loss = float(torch.nn.functional.mse_loss(net(x), y))
        return loss, -loss

    return model, batches, torch.nn.functional.mse_loss, validate


def _run(out_dir: Path, fail_at_epoch: int | None = None):
    model, batches, loss, validate = _problem(fail_at_epoch)
    config = TrainConfig(epochs=4, batch_size=8, lr=0.05, seed=3)
    return fit(model, batches, loss, validate, config, out_dir, fingerprint({"test": 1}))


def test_loss_decreases_and_history_columns(tmp_path: Path) -> None:
    _, history = _run(tmp_path)
    assert list(history.columns) == ["epoch", "train_loss", "val_loss", "val_metric", "seconds"]
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]


def test_resume_after_interruption_gives_the_same_model(tmp_path: Path) -> None:
    reference, ref_history = _run(tmp_path / "a")
    with pytest.raises(Interrupted):
        _run(tmp_path / "b", fail_at_epoch=2)
    assert (tmp_path / "b" / "checkpoints" / "last.pt").exists()
    resumed, history = _run(tmp_path / "b")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(history["val_loss"], ref_history["val_loss"], rtol=1e-6)
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path: Path) -> None:
    _run(tmp_path)
    model, batches, loss, validate = _problem()
    config = TrainConfig(epochs=2, batch_size=8, lr=0.05, seed=3)
    _, history = fit(model, batches, loss, validate, config, tmp_path, fingerprint({"test": 2}))
    assert history["epoch"].tolist() == [1, 2]
