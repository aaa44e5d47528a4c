"""The config schema stops a run before any job starts, naming the offending key."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def dry_run(tmp_path: Path, *config: str) -> subprocess.CompletedProcess:
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--cores", "1", "-n", "all"]  # fmt: skip
    if config:
        cmd += ["--config", *config]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)


def test_default_config_dry_run_resolves(tmp_path: Path) -> None:
    result = dry_run(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for rule in (
        "train_model",
        "ceph_evaluate",
        "brain_phantoms",
        "brain_report",
        "benchmark_scaling",
    ):
        assert rule in result.stdout, rule


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("bogus_key=1", "bogus_key"),
        ("scale=huge", "scale"),
        ("seed=-3", "seed"),
        ("threads=two", "threads"),
        ("face_landmarks={typo_key: 1}", "typo_key"),
        ("face_landmarks={scales: {quick: {source: {stepz: 5}}}}", "stepz"),
    ],
)
def test_bad_config_is_refused_naming_the_key(tmp_path: Path, override: str, named: str) -> None:
    result = dry_run(tmp_path, override)
    assert result.returncode != 0
    assert named in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()
