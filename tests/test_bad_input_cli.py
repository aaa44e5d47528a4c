"""Bad input through the command line, as a Snakemake rule meets it: exit status 2, a message
naming the file and the problem, and no output written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medrepro.cli import main
from medrepro.phantoms.head_ct import generate_cohort

ARGS = [
    "--spacing",
    "12",
    "12",
    "12",
    "--shape",
    "16",
    "16",
    "10",
    "--labels",
    "Or-L",
    "Or-R",
    "Po-L",
    "Po-R",
]


@pytest.fixture()
def cohort(tmp_path: Path) -> Path:
    generate_cohort(tmp_path / "cohort", n_patients=3, spacing_mm=5.0, seed=1)
    return tmp_path / "cohort"


def run(cohort: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(
        ["ceph-preprocess", "--cases", str(cohort / "cases.csv"), "--out", str(out), *ARGS]
    )
    return status, capsys.readouterr().err


def test_good_cohort_passes(
    cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _ = run(cohort, tmp_path / "dataset.npz", capsys)
    assert status == 0 and (tmp_path / "dataset.npz").exists()


def test_truncated_nifti(cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = cohort / "P001_post.nii.gz"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    status, err = run(cohort, tmp_path / "dataset.npz", capsys)
    assert status == 2
    assert "P001_post.nii.gz" in err
    assert not (tmp_path / "dataset.npz").exists()
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda points: points[:3], "Po-R"),  # a landmark is missing
        (lambda points: points + [{**points[0], "label": "Gonion"}], "Gonion"),  # unknown label
    ],
)
def test_bad_markups(
    cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit, problem: str
) -> None:
    markups = cohort / "P002_pre.mrk.json"
    doc = json.loads(markups.read_text())
    doc["markups"][0]["controlPoints"] = edit(doc["markups"][0]["controlPoints"])
    markups.write_text(json.dumps(doc))
    status, err = run(cohort, tmp_path / "dataset.npz", capsys)
    assert status == 2
    assert "P002_pre.mrk.json" in err and problem in err
    assert not (tmp_path / "dataset.npz").exists()
