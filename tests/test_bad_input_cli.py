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


@pytest.fixture(scope="module")
def brain_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 6-mm phantom subjects; the third (index 2) is stored as DICOM series."""
    from medrepro.phantoms.brain_mri import generate_cohort as generate_brain_cohort

    root = tmp_path_factory.mktemp("brain") / "cohort"
    root.mkdir()
    generate_brain_cohort(root, n_subjects=3, spacing_mm=6.0, seed=0, dicom_fraction=1.0)
    return root


def convert(cohort: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(
        ["brain-convert", "--cohort", str(cohort), "--subject", "sub-001", "--out-dir", str(out)]
    )
    return status, capsys.readouterr().err


def test_brain_dicom_series_with_a_missing_slice(
    brain_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    cohort = tmp_path / "cohort"
    shutil.copytree(brain_cohort, cohort)
    series = cohort / "sub-001" / "dicom_t2"
    files = sorted(series.glob("*.dcm"))
    assert len(files) > 4
    files[len(files) // 2].unlink()
    status, err = convert(cohort, tmp_path / "native", capsys)
    assert status == 2
    assert str(series) in err and "missing slice" in err
    assert not (tmp_path / "native").exists()


def test_brain_subject_without_a_modality(
    brain_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    cohort = tmp_path / "cohort"
    shutil.copytree(brain_cohort, cohort)
    shutil.rmtree(cohort / "sub-001" / "dicom_flair")
    status, err = convert(cohort, tmp_path / "native", capsys)
    assert status == 2
    assert "subjects.csv" in err and "sub-001" in err and "flair" in err
    assert not (tmp_path / "native").exists()
