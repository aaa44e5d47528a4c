"""The SLURM profile on a real single-node SLURM: same results as a local run, faults handled.

The DAG is the cephalometry smoke DAG up to one trained model and its evaluation
(``results/cephalometry/models/vgg/predictions.csv``: phantoms, split, preprocessing, test
inputs, training, export, INT8 quantization, evaluation; 8 jobs). The full ``cephalometry``
target adds 18 jobs of the same rules (three more models, benchmarks, report) and would triple
the time of the test without exercising anything else of the executor.

* ``test_results_match_local_run``: the DAG runs once locally and once through
  ``--workflow-profile workflow/profiles/slurm``. Byte-identical: the split table (pure
  function of the seed and the case list). Equal arrays: the preprocessed dataset and the test
  inputs (``.npz`` archives carry their write time, so their bytes differ). Numerically close
  (``rtol=1e-5``): training history losses and the prediction table. Training and inference
  run with the same seed and thread count in both runs and came out identical when this test
  was written; the tolerance only leaves room for a different BLAS code path on a node whose
  CPU differs from the submitting host's (it cannot on one node, but the test also runs on a
  real cluster via ``MEDREPRO_SLURM_PARTITION``). Timings (``seconds`` in the history) are
  not compared.
* ``test_cancelled_job_is_retried``: during that SLURM run the training job is cancelled with
  ``scancel`` while it runs; the profile's ``retries`` submit it again and the DAG completes
  with every output (the comparison above runs on that very run, so nothing was lost).
* ``test_failed_job_leaves_no_output``: a ``sitecustomize`` on ``PYTHONPATH`` (which
  ``sbatch --export=ALL`` passes to the job; no rule is edited) lets ``ceph-preprocess`` run to
  completion and then exits 1. Its output existed when it failed; Snakemake must delete it,
  keep the upstream outputs and report the error.

The three Snakemake runs (local, SLURM with the cancellation, SLURM with the failure) run at
the same time, each in its own directory: the SLURM runs spend most of their time waiting for
the plugin's status checks (every 2 s, then 12, 22... s while no job finishes), so the local
run and the failing run fit in that time (about 4 minutes in all on 2 cores).

The cluster comes from ``tests/slurm_cluster.py`` (started here, or an existing one); the tests
skip without SLURM unless ``MEDREPRO_REQUIRE_SLURM`` is set (CI), then they fail.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from slurm_cluster import SlurmCluster, slurm_cluster
from smoke_pipeline import REPO, snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.integration]

CEPH = Path("results/cephalometry")
TARGET = str(CEPH / "models/vgg/predictions.csv")
#: The rule whose running job is cancelled (the longest job of the DAG).
CANCELLED_RULE = "train_model"
PROFILE = REPO / "workflow" / "profiles" / "slurm"


def slurm_args(cluster: SlurmCluster, *extra: str) -> list[str]:
    """The SLURM profile plus the flags a cluster without accounting database needs."""
    return [
        "--workflow-profile", str(PROFILE),
        # No slurmdbd: sacct cannot report job states and there is no account to look up.
        "--slurm-status-command", "squeue",
        "--slurm-no-account",
        # First status check after 2 s (default 40 s): the smoke jobs take seconds.
        "--slurm-init-seconds-before-status-checks", "2",
        "--slurm-keep-successful-logs",
        # One node, local file system: outputs are visible at once.
        "--latency-wait", "5",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    yield from slurm_cluster()


#: Injected failure: Python imports ``sitecustomize`` from ``PYTHONPATH`` at start-up; this one
#: lets ``python -m medrepro <MEDREPRO_TEST_FAIL_COMMAND> ...`` run to completion, lists the
#: directory ``MEDREPRO_TEST_FAIL_LIST`` and exits 1, but only in the working directory
#: ``MEDREPRO_TEST_FAIL_DIR`` (the other runs import it and it does nothing). A fake ``python``
#: first on ``PATH`` would not do: common.smk puts the interpreter running Snakemake first on
#: the jobs' ``PATH``.
SITECUSTOMIZE = """\
import atexit, os, sys


def _inject_failure():
    argv = sys.argv
    if (
        len(argv) > 1
        and argv[0].endswith(os.path.join("medrepro", "__main__.py"))
        and argv[1] == os.environ.get("MEDREPRO_TEST_FAIL_COMMAND")
        and os.getcwd() == os.environ.get("MEDREPRO_TEST_FAIL_DIR")
    ):
        listed = sorted(os.listdir(os.environ["MEDREPRO_TEST_FAIL_LIST"]))
        print(f"injected failure after {argv[1]}; outputs present: {listed}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)


atexit.register(_inject_failure)
"""
FAIL_COMMAND = "ceph-preprocess"
FAIL_TARGET = str(CEPH / "preprocessed/dataset.npz")


@dataclass
class Canceller:
    """Cancels the first job of ``rule`` seen running (once), from a background thread."""

    cluster: SlurmCluster
    rule: str
    delay_s: float = 1.0
    cancelled: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set() and not self.cancelled:
            try:
                jobs = self.cluster.jobs()
            except Exception:  # noqa: BLE001 - the controller may be busy; poll again
                jobs = []
            for job in jobs:
                if f"rule_{self.rule}_" in job["comment"] and job["state"] == "RUNNING":
                    time.sleep(self.delay_s)  # into the job's work, not its start
                    self.cluster.cancel(job["id"])
                    self.cancelled.append(job["id"])
                    return
            time.sleep(0.3)

    def __enter__(self) -> Canceller:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass
class SlurmRun:
    """A Snakemake run through SLURM: its directory, output, exit code and SLURM jobs."""

    workdir: Path
    log: str
    returncode: int
    jobs: list[dict[str, str]]
    cancelled: list[str] = field(default_factory=list)


@dataclass
class Runs:
    local: Path
    slurm: SlurmRun
    failing: SlurmRun


def _new_workdir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    workdir = tmp_path_factory.mktemp(name)
    (workdir / "config.yaml").write_bytes((REPO / "config.yaml").read_bytes())
    return workdir


def _slurm_run(cluster: SlurmCluster, workdir: Path, target: str, *extra: str) -> SlurmRun:
    result = snakemake(workdir, target, *slurm_args(cluster, *extra), check=False)
    log = result.stdout + result.stderr
    own = set(re.findall(r"submitted with SLURM jobid (\d+)", log))
    return SlurmRun(
        workdir=workdir,
        log=log,
        returncode=result.returncode,
        jobs=[job for job in cluster.jobs() if job["id"] in own],
    )


@pytest.fixture(scope="module")
def runs(cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    local = _new_workdir(tmp_path_factory, "local")
    slurm = _new_workdir(tmp_path_factory, "slurm")
    failing = _new_workdir(tmp_path_factory, "slurm_fail")
    inject = failing / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {
        **cluster.env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(inject), os.environ.get("PYTHONPATH")])),
        "MEDREPRO_TEST_FAIL_COMMAND": FAIL_COMMAND,
        "MEDREPRO_TEST_FAIL_DIR": str(failing),
        "MEDREPRO_TEST_FAIL_LIST": str(failing / CEPH / "preprocessed"),
    }
    with pytest.MonkeyPatch.context() as mp:
        # smoke_pipeline.snakemake runs Snakemake in this process's environment
        for key, value in env.items():
            if os.environ.get(key) != value:
                mp.setenv(key, value)
        with ThreadPoolExecutor(3) as pool, Canceller(cluster, CANCELLED_RULE) as canceller:
            slurm_future = pool.submit(_slurm_run, cluster, slurm, TARGET)
            failing_future = pool.submit(
                _slurm_run, cluster, failing, FAIL_TARGET, "--retries", "0"
            )
            local_future = pool.submit(snakemake, local, TARGET)
            slurm_result = slurm_future.result()
            failing_result = failing_future.result()
            local_future.result()
        slurm_result.cancelled = canceller.cancelled
        yield Runs(local=local, slurm=slurm_result, failing=failing_result)


def test_results_match_local_run(runs: Runs) -> None:
    run = runs.slurm
    assert run.returncode == 0, run.log[-6000:]
    local, remote = runs.local / CEPH, run.workdir / CEPH
    # every job of the DAG ran as a SLURM job
    rules = {job["comment"].split("_wildcards_")[0] for job in run.jobs}
    for rule in ("ceph_phantoms", "split_cases", "ceph_preprocess", "select_inputs",
                 "train_model", "export_model", "quantize_model", "ceph_evaluate"):  # fmt: skip
        assert f"rule_{rule}" in rules, (rule, run.jobs)
    # byte-identical
    split = "preprocessed/splits.csv"
    assert (remote / split).read_bytes() == (local / split).read_bytes()
    # equal arrays (npz bytes carry write times)
    for archive in ("preprocessed/dataset.npz", "preprocessed/inputs_test.npz"):
        with np.load(local / archive) as a, np.load(remote / archive) as b:
            assert sorted(a.files) == sorted(b.files), archive
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{archive}:{key}")
    # numerically close
    history_l = pd.read_csv(local / "models/vgg/history.csv").drop(columns="seconds")
    history_r = pd.read_csv(remote / "models/vgg/history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(history_r, history_l, check_exact=False, rtol=1e-5)
    pred_l = pd.read_csv(local / "models/vgg/predictions.csv")
    pred_r = pd.read_csv(remote / "models/vgg/predictions.csv")
    pd.testing.assert_frame_equal(pred_r, pred_l, check_exact=False, rtol=1e-5, atol=1e-6)
    # every output of the local run exists in the SLURM run too
    local_files = {p.relative_to(local) for p in local.rglob("*") if p.is_file()}
    remote_files = {p.relative_to(remote) for p in remote.rglob("*") if p.is_file()}
    assert local_files <= remote_files, local_files - remote_files


def test_cancelled_job_is_retried(runs: Runs) -> None:
    run = runs.slurm
    assert run.cancelled, f"no {CANCELLED_RULE} job was seen running; jobs: {run.jobs}"
    (cancelled,) = run.cancelled
    states = {job["id"]: job["state"] for job in run.jobs}
    assert states[cancelled] == "CANCELLED", run.jobs
    retried = [
        job["state"] for job in run.jobs
        if f"rule_{CANCELLED_RULE}_" in job["comment"] and int(job["id"]) > int(cancelled)
    ]  # fmt: skip
    assert retried == ["COMPLETED"], run.jobs
    assert f"SLURM-job '{cancelled}' failed, SLURM status is: 'CANCELLED'" in run.log
    assert run.returncode == 0 and "steps (100%) done" in run.log, run.log[-4000:]
    assert (run.workdir / CEPH / "models/vgg/model.pt").stat().st_size > 0


def test_failed_job_leaves_no_output(runs: Runs) -> None:
    run = runs.failing
    assert run.returncode != 0, run.log[-4000:]
    assert "Error in rule ceph_preprocess" in run.log, run.log[-4000:]
    # it failed as a SLURM job (not on the submitting host)
    assert re.search(r"SLURM-job '\d+' failed, SLURM status is: 'FAILED'", run.log), run.log[-4000:]
    job_log = (run.workdir / "logs/cephalometry/preprocess.log").read_text()
    assert f"injected failure after {FAIL_COMMAND}" in job_log, job_log[-2000:]
    assert "'dataset.npz'" in job_log.split("outputs present:")[1]  # written before failing
    assert not (run.workdir / FAIL_TARGET).exists(), "the failed job's output was left behind"
    # the upstream job's output is kept
    assert (run.workdir / "data/cephalometry/synthetic/cases.csv").exists()
