#!/usr/bin/env bash
# Installs a single-node SLURM (controller, compute daemon, client) and munge from Debian's
# packages, for tests/test_slurm_cluster.py. Idempotent and quiet: nothing happens when the
# binaries are already there. Needs root (or sudo). The daemons are not started here: the test
# writes its own slurm.conf and starts them (tests/slurm_cluster.py).
set -euo pipefail

if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
    && command -v sbatch >/dev/null && command -v munged >/dev/null; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# Package scripts try to start services; there is no init system in CI containers, and the
# test starts the daemons itself. policy-rc.d exit code 101 tells invoke-rc.d not to start them.
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod +x "$POLICY"
    CREATED_POLICY=1
fi
$SUDO apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
if [ "$CREATED_POLICY" -eq 1 ]; then
    $SUDO rm -f "$POLICY"
fi
