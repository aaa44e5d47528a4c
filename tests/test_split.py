"""Tests for medrepro.data.split: patient-level, deterministic train/val/test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medrepro.data.split import main, split_by_patient, split_counts
from medrepro.io.errors import InputError


def _cases(n_patients: int) -> pd.DataFrame:
    rows = [
        {"case_id": f"p{p:02d}_t{t}", "patient_id": f"p{p:02d}"}
        for p in range(n_patients)
        for t in range(1 + p % 3)
    ]
    return pd.DataFrame(rows)


def test_no_patient_in_two_splits() -> None:
    cases = _cases(12)
    out = split_by_patient(cases, (0.6, 0.2, 0.2), seed=0)
    assert list(out.columns) == ["case_id", "patient_id", "split"]
    assert out["case_id"].tolist() == cases["case_id"].tolist()
    assert (out.groupby("patient_id")["split"].nunique() == 1).all()
    per_split = out.groupby("split")["patient_id"].nunique()
    assert tuple(per_split[name] for name in ("train", "val", "test")) == split_counts(
        12, (0.6, 0.2, 0.2)
    )
    assert set(out["split"]) == {"train", "val", "test"}


def test_deterministic_and_row_order_independent() -> None:
    cases = _cases(15)
    a = split_by_patient(cases, seed=3)
    b = split_by_patient(cases, seed=3)
    pd.testing.assert_frame_equal(a, b)
    shuffled = cases.sample(frac=1.0, random_state=7).reset_index(drop=True)
    c = split_by_patient(shuffled, seed=3)
    assert dict(zip(c["case_id"], c["split"], strict=True)) == dict(
        zip(a["case_id"], a["split"], strict=True)
    )
    assert any(
        not split_by_patient(cases, seed=s)["split"].equals(a["split"]) for s in range(4, 10)
    )


def test_small_cohorts() -> None:
    out = split_by_patient(_cases(3), seed=0)
    assert sorted(out.groupby("split")["patient_id"].nunique().tolist()) == [1, 1, 1]
    with pytest.raises(InputError, match="at least 3 patients"):
        split_by_patient(_cases(2), seed=0)
    with pytest.raises(InputError, match="patient_id"):
        split_by_patient(pd.DataFrame({"case_id": ["a", "b", "c"]}))


@pytest.mark.parametrize("n", [3, 4, 5, 7, 10, 20, 101])
def test_split_counts(n: int) -> None:
    counts = split_counts(n, (0.6, 0.2, 0.2))
    assert sum(counts) == n and min(counts) >= 1
    assert abs(counts[0] - 0.6 * n) <= 1.0 + (n < 5)
    with pytest.raises(ValueError):
        split_counts(n, (0.5, 0.5, 0.0))


def test_main_writes_csv(tmp_path: Path) -> None:
    cases_csv = tmp_path / "cases.csv"
    _cases(6).assign(timepoint="0", image="x.nii.gz", landmarks="x.mrk.json").to_csv(
        cases_csv, index=False
    )
    out = tmp_path / "out" / "splits.csv"
    assert (
        main(
            [
                "--cases",
                str(cases_csv),
                "--out",
                str(out),
                "--fractions",
                "0.5",
                "0.25",
                "0.25",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    df = pd.read_csv(out, dtype=str)
    assert list(df.columns) == ["case_id", "patient_id", "split"]
    assert np.all(df.groupby("patient_id")["split"].nunique() == 1)
    with pytest.raises(InputError, match="missing.csv"):
        main(["--cases", str(tmp_path / "missing.csv"), "--out", str(out)])


def test_select_inputs_rgb_layout_is_channels_first_in_unit_range() -> None:
    import numpy as np

    from medrepro.data.select_inputs import select_inputs

    images = np.zeros((3, 4, 5, 3), dtype=np.uint8)
    images[1, 2, 3] = (255, 0, 51)
    splits = pd.DataFrame(
        {
            "case_id": ["a", "b", "c"],
            "patient_id": ["p", "q", "r"],
            "split": ["train", "test", "val"],
        }
    )
    inputs, ids = select_inputs(images, ["a", "b", "c"], splits, "test", layout="rgb")
    assert inputs.shape == (1, 3, 4, 5) and inputs.dtype == np.float32
    assert list(ids) == ["b"]
    assert inputs[0, :, 2, 3].tolist() == pytest.approx([1.0, 0.0, 0.2])
    assert inputs.sum() == pytest.approx(1.2)
