"""The lowres study container: round trip, and reading only what is asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medrepro.data.lowres_studies import (
    OBJECT_COLUMNS,
    Study,
    read_studies,
    read_study_arrays,
    studies_of_split,
    write_studies,
)
from medrepro.io.errors import InputError


def _row(sid: str, split: str, excluded: bool) -> dict:
    return dict(study_id=sid, split=split, group="0", shape_z=4, shape_y=5, shape_x=6,
                spacing_z=2.0, spacing_y=1.0, spacing_x=1.0, n_objects=1, excluded=excluded,
                reason="bad" if excluded else "")  # fmt: skip


def test_round_trip_and_partial_reads(tmp_path: Path) -> None:
    image = np.linspace(0, 1, 120, dtype=np.float32).reshape(4, 5, 6)
    mask = (image > 0.9).astype(np.uint8)
    table = pd.DataFrame([_row("a", "test", False), _row("b", "test", True)])
    write_studies(tmp_path / "pre", [Study("a", image, mask, (2.0, 1.0, 1.0))], table,
                  pd.DataFrame(columns=OBJECT_COLUMNS))  # fmt: skip
    assert studies_of_split(read_studies(tmp_path / "pre" / "studies.csv"), "test") == ["a"]
    npz = tmp_path / "pre" / "studies.npz"
    img, msk = read_study_arrays(npz, ["a"])["a"]
    assert img.dtype == np.float32 and np.abs(img - image).max() < 1e-3  # stored as float16
    np.testing.assert_array_equal(msk, mask)
    img16, no_mask = read_study_arrays(npz, ["a"], with_mask=False, dtype=np.float16)["a"]
    assert img16.dtype == np.float16 and no_mask is None
    no_image, msk2 = read_study_arrays(npz, ["a"], with_image=False)["a"]
    assert no_image is None
    np.testing.assert_array_equal(msk2, mask)
    with pytest.raises(InputError, match="'b' is not in the container"):
        read_study_arrays(npz, ["b"])
