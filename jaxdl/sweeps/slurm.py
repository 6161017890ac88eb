"""SLURM: a list of commands as one job array, waited for, accounted for, cancelled, and
requeued when its time runs out.

Array task i runs command i (`array_script`). Each task is submitted `--requeue` and
`--signal=B:USR1@SIGNAL_BEFORE_END_S`: when the end of its time limit is near, SLURM
sends USR1 to the task's batch shell, which passes SIGTERM to the command (a trainer
saves a checkpoint and exits; a search worker stops its trial the same way) and puts the
task back in the queue (`scontrol requeue`); the same command, started again, resumes
from the checkpoint. A preempted task gets SIGTERM from SLURM and is requeued by SLURM
itself (`--requeue`). A task that ends writes its exit code to <logs>/<i>.exit; a task
requeued or cancelled writes none.
"""

import shlex
import subprocess
import time
from pathlib import Path

from jaxdl.errors import UserError
from jaxdl.sweeps.slots import ROOT, Stopper

SIGNAL_BEFORE_END_S = 120  # USR1 this long before a task's time limit
DONE, CANCELLED, UNKNOWN = "COMPLETED", "CANCELLED", "UNKNOWN"

# The batch shell: task i's command in the background, signals passed on, its exit code
# written unless it is requeued (or cancelled).
_TASK = """\
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" <<< "$COMMANDS")
requeue="" stopped=""
trap 'requeue=1; kill -TERM "$child" 2>/dev/null' USR1
trap 'stopped=1; kill -TERM "$child" 2>/dev/null' TERM
eval "exec $line" &
child=$!
while kill -0 "$child" 2>/dev/null; do wait "$child"; done
wait "$child"
code=$?
if [ -n "$requeue" ]; then
  echo "time limit near: saved; requeued" >&2
  scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
  exit 0
fi
[ -n "$stopped" ] && exit 143
echo "$code" > {logs}/"$SLURM_ARRAY_TASK_ID".exit
exit "$code"
"""


def array_script(
    name: str,
    commands: list[list[str]],
    logs: Path,
    parallel: int | None = None,
    sbatch_options: tuple = (),
    tasks: int = 1,
) -> str:
    """A job-array script: task i runs commands[i] (logs in <logs>/<i>.out and .err), at
    most `parallel` at a time; with `tasks` > 1, as that many processes of one JAX job
    (srun; launch/train.py joins it with --jax_distributed)."""
    prefix = ["srun", f"--ntasks={tasks}", "--kill-on-bad-exit=1"] if tasks > 1 else []
    suffix = ["--jax_distributed"] if tasks > 1 else []
    limit = f"%{parallel}" if parallel else ""
    header = [
        "#!/bin/bash",
        f"#SBATCH --job-name=jaxdl-{name}",
        f"#SBATCH --array=0-{len(commands) - 1}{limit}",
        f"#SBATCH --output={logs}/%a.out",
        f"#SBATCH --error={logs}/%a.err",
        "#SBATCH --open-mode=append",  # a requeued task's log goes on
        "#SBATCH --requeue",
        f"#SBATCH --signal=B:USR1@{SIGNAL_BEFORE_END_S}",
        *([f"#SBATCH --ntasks={tasks}"] if tasks > 1 else []),
        *(f"#SBATCH {option}" for option in sbatch_options),
    ]
    lines = "\n".join(shlex.join([*prefix, *command, *suffix]) for command in commands)
    body = [
        "set -uo pipefail",
        f"cd {shlex.quote(str(ROOT))}",
        "COMMANDS=$(cat <<'JAXDL_TASKS'",
        lines,
        "JAXDL_TASKS",
        ")",
        _TASK.replace("{logs}", shlex.quote(str(logs))),
    ]
    return "\n".join(header + body)


def submit(script: str, logs: Path) -> str:
    """Writes `script` to <logs>/array.sh (old exit codes removed: another numbering)
    and submits it; returns the job id."""
    logs.mkdir(parents=True, exist_ok=True)
    for stale in logs.glob("*.exit"):
        stale.unlink()
    path = logs / "array.sh"
    path.write_text(script)
    submitted = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True)
    if submitted.returncode != 0:
        raise UserError(f"sbatch failed: {submitted.stderr.strip() or submitted.stdout}")
    return submitted.stdout.strip().split(";")[0]


def queued(job: str) -> bool:
    """Whether any task of `job` is still queued or running (a requeued one is)."""
    listed = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i"], capture_output=True, text=True)
    return bool(listed.stdout.strip())


def cancel(job: str) -> None:
    """SIGTERM to every process of the job (they save), then the job is cancelled."""
    subprocess.run(["scancel", "--signal=TERM", "--full", job])
    subprocess.run(["scancel", job])


def wait(job: str, stopper: Stopper, poll_s: float = 2.0) -> None:
    """Until no task of `job` is queued; a signal to this process (or `stopper.stop()`)
    cancels the job."""
    with stopper.caught():
        while queued(job):
            if stopper.stopped:
                cancel(job)
            time.sleep(poll_s)


def outcomes(job: str, logs: Path, count: int) -> list[tuple[str, str]]:
    """(state, exit code) of tasks 0..count-1: from the exit code a task wrote, else
    from accounting (sacct: a task that never ran to its end, where accounting is on)."""
    states = task_states(job)
    found = []
    for index in range(count):
        state, code = states.get(index, (UNKNOWN, "?"))
        exit_file = logs / f"{index}.exit"
        if exit_file.exists():
            code = exit_file.read_text().strip()
            state = DONE if code == "0" else "FAILED"
        found.append((state, code))
    return found


def task_states(job: str) -> dict[int, tuple[str, str]]:
    """Array index -> (state, exit code) from sacct, where accounting is on (retried:
    it lags); clusters keep it off by default."""
    for _ in range(3):
        try:
            out = subprocess.run(
                ["sacct", "-n", "-P", "-X", "-j", job, "-o", "JobID,State,ExitCode"],
                capture_output=True,
                text=True,
            ).stdout
        except FileNotFoundError:
            return {}
        states = {}
        for line in out.strip().splitlines():
            fields = line.split("|")
            if len(fields) != 3 or "_" not in fields[0]:
                continue
            index = fields[0].split("_")[1]
            if index.isdigit():
                states[int(index)] = (fields[1].split()[0], fields[2].split(":")[0])
        if states:
            return states
        time.sleep(1)
    return {}


def error_tail(logs: Path, index: int, lines: int = 5) -> list[str]:
    """The last lines of task `index`'s stderr."""
    err = logs / f"{index}.err"
    return err.read_text(errors="replace").strip().splitlines()[-lines:] if err.exists() else []
