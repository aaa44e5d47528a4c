"""Snakemake and Python conventions, checked in CI: `snakemake --lint` reports nothing, the
Snakefiles are snakefmt-formatted, the Python passes ruff (lint and format), and a dry run of
`all` and of each paper's target works without any data present."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGETS = ["all", "cephalometry", "brain_extraction", "cerebellum_yolo", "lowres", "face_landmarks"]


def run(*cmd: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)


def test_snakemake_lint_reports_nothing(tmp_path: Path) -> None:
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    result = run(
        sys.executable, "-m", "snakemake", "--snakefile", REPO / "Snakefile",
        "--directory", tmp_path, "--lint",
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "Lints for" not in out and "Congratulations" in out, out[-4000:]


def test_snakefiles_are_snakefmt_formatted() -> None:
    result = run(BIN / "snakefmt", "--check", "Snakefile", "workflow/")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_python_passes_ruff(args: list[str]) -> None:
    result = run(sys.executable, "-m", "ruff", *args, ".")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


@pytest.mark.parametrize("target", TARGETS)
def test_dry_run_without_data(tmp_path: Path, target: str) -> None:
    """An empty directory with only the config: the DAG resolves down to the phantom rules."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    result = run(
        sys.executable, "-m", "snakemake", "--snakefile", REPO / "Snakefile",
        "--directory", tmp_path, "--cores", "2", "-n", target,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "This was a dry-run" in out
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()
