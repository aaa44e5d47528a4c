"""Running the Snakefile at smoke scale in a scratch directory (shared by the pipeline tests)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``snakemake <args> --config scale=smoke`` on 2 cores in ``workdir``.

    Targets go before ``--config``: Snakemake reads every word after ``--config`` as a setting.
    """
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--cores", "2", *args, "--config", "scale=smoke",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if check and result.returncode != 0:
        pytest.fail(
            f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )
    return result


def smoke_workdir(tmp_path_factory: pytest.TempPathFactory, name: str, target: str) -> Path:
    """A scratch directory with the repository's config in which ``target`` has been built."""
    workdir = tmp_path_factory.mktemp(name)
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    snakemake(workdir, target)
    return workdir


def report_files(workdir: Path, target: str) -> set[str]:
    """Build Snakemake's self-contained report of ``target`` (a zip) in ``workdir``; the names of
    the result files it holds (figures and tables, without their folders)."""
    snakemake(workdir, target, "--report", "report.zip")
    with zipfile.ZipFile(workdir / "report.zip") as archive:
        names = archive.namelist()
    assert any(n.endswith("report.html") for n in names), names[:10]
    return {Path(n).name for n in names if "/data/raw/" in n}
