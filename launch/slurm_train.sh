#!/bin/bash
# One training as N processes of one JAX job under SLURM:
#
#     sbatch --ntasks=2 launch/slurm_train.sh --config=experiments/fashion_cnn.py --workdir=DIR
#
# Each SLURM task runs launch/train.py --jax_distributed: JAX finds the job (coordinator,
# process count, this task's index) in SLURM's environment; on CPU nodes collectives go
# over gloo. Process 0 writes the run's files; all write checkpoints together; SIGTERM
# (scancel, preemption) to the job stops every process at the same step with a save, and
# sbatch-ing the same command again resumes. A task that dies ends the job within seconds:
# the others' next collective fails and each exits at once with one line (no wait in JAX's
# shutdown for the dead one's heartbeat), and --kill-on-bad-exit stops any still running
# (SIGTERM, then SIGKILL after the cluster's KillWait). PYTHON picks the interpreter.
#SBATCH --job-name=jaxdl-train
#SBATCH --output=slurm-%j.out
set -euo pipefail
exec srun --kill-on-bad-exit=1 "${PYTHON:-.venv/bin/python}" launch/train.py --jax_distributed "$@"
