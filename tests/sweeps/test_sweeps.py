"""Sweep definitions (pure) and the local sweep runner end to end."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from jaxdl import sweeps
from jaxdl.errors import UserError
from jaxdl.sweeps.runner import Sweep
from jaxdl.train.rundir import STOPPED_FILE
from jaxdl.train.writers import read_metrics
from tests.conftest import ROOT
from tests.train.test_train_e2e import wait_for_rows


def test_grid_is_every_combination_last_axis_fastest():
    trials = sweeps.grid(**{"optimizer.learning_rate": [0.1, 0.2], "seed": range(3)})
    assert len(trials) == 6
    assert trials[0] == {"optimizer.learning_rate": 0.1, "seed": 0}
    assert trials[1] == {"optimizer.learning_rate": 0.1, "seed": 1}
    assert trials[-1] == {"optimizer.learning_rate": 0.2, "seed": 2}
    with pytest.raises(UserError, match="no values"):
        sweeps.grid(seed=[])


def test_random_search_is_seeded_and_in_range():
    axes = dict(
        lr=sweeps.loguniform(1e-4, 1e-1), wd=sweeps.uniform(0.0, 0.1), opt=sweeps.choice(["a", "b"])
    )
    trials = sweeps.random_search(50, seed=1, **axes)
    assert trials == sweeps.random_search(50, seed=1, **axes)
    assert trials != sweeps.random_search(50, seed=2, **axes)
    assert all(1e-4 <= t["lr"] <= 1e-1 and 0 <= t["wd"] <= 0.1 for t in trials)
    assert {t["opt"] for t in trials} == {"a", "b"}
    # Log-uniform: about as many draws below 1e-2.5 as above it.
    below = sum(t["lr"] < 10**-2.5 for t in trials)
    assert 15 <= below <= 35


def test_command_line_axes_parse_and_multiply():
    assert sweeps.parse_axis("config.optimizer.learning_rate=[1e-3,3e-3]") == (
        "optimizer.learning_rate",
        [1e-3, 3e-3],
    )
    assert sweeps.parse_axis("config.seed=range(3)") == ("seed", [0, 1, 2])
    assert sweeps.parse_axis("config.model.cell=('lstm','rnn')") == ("model.cell", ["lstm", "rnn"])
    for bad in ("config.seed", "config.seed=[]", "config.seed=oops(", "config.seed=3"):
        with pytest.raises(UserError):
            sweeps.parse_axis(bad)
    trials = sweeps.combine([{"seed": 0}, {"seed": 1}], [("model.dense", [8, 16])])
    assert trials == [
        {"seed": 0, "model.dense": 8},
        {"seed": 0, "model.dense": 16},
        {"seed": 1, "model.dense": 8},
        {"seed": 1, "model.dense": 16},
    ]
    with pytest.raises(UserError, match="same trial twice"):
        sweeps.combine([{"seed": 0}], [("seed", [1, 1])])


def test_trial_names_say_what_the_trial_is():
    name = sweeps.trial_name(3, {"optimizer.learning_rate": 0.003, "model.stages": ((8,),)})
    assert name.startswith("003_learning_rate=0.003_stages=")
    assert "/" not in name and " " not in name


def sweep_command(sweep_dir, data_dir, *flags):
    return [
        sys.executable,
        str(ROOT / "launch/sweep.py"),
        f"--config={ROOT}/experiments/fashion_cnn_tiny.py",
        f"--config.data.data_dir={data_dir}",
        "--config.train.num_steps=6",
        f"--sweep_dir={sweep_dir}",
        *flags,
    ]


@pytest.mark.slow
def test_local_sweep_runs_records_a_failure_and_resumes(synthetic_data_dir, tmp_path):
    sweep_dir = tmp_path / "sweep"
    # Three trials; SGD at learning rate 1e9 diverges to NaN: the failing one.
    axis = "--sweep=config.optimizer.learning_rate=[0.01,0.03,1e9]"
    flags = (axis, "--config.optimizer.name=sgd", "--parallel=2")
    run = lambda: subprocess.run(
        sweep_command(sweep_dir, synthetic_data_dir, *flags),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    result = run()
    assert result.returncode == 3, result.stderr[-3000:]  # finished, with a failed trial
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    statuses = [t["status"] for t in manifest["trials"]]
    assert statuses == ["done", "done", "failed"]
    assert "non-finite" in manifest["trials"][2]["error"]
    for trial in manifest["trials"][:2]:
        assert (sweep_dir / trial["name"] / "metrics.jsonl").is_file()
        config = json.loads((sweep_dir / trial["name"] / "config.json").read_text())
        assert config["optimizer"]["learning_rate"] == trial["overrides"]["optimizer.learning_rate"]
        assert config["optimizer"]["name"] == "sgd"
    summary = (sweep_dir / "summary.md").read_text()
    assert "Best: **000_learning_rate=0.01**" in summary or "Best: **001_" in summary
    assert "failed" in summary and (sweep_dir / "summary.png").is_file()
    csv_lines = (sweep_dir / "summary.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 4 and "final eval/loss" in csv_lines[0]

    # Again: the finished trials are skipped, the failed one is retried (and fails again).
    before = [
        (sweep_dir / t["name"] / "metrics.jsonl").stat().st_mtime for t in manifest["trials"][:2]
    ]
    assert run().returncode == 3
    after = [
        (sweep_dir / t["name"] / "metrics.jsonl").stat().st_mtime for t in manifest["trials"][:2]
    ]
    assert before == after


@pytest.mark.slow
def test_a_bad_trial_is_rejected_before_anything_runs(synthetic_data_dir, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = subprocess.run(
        sweep_command(
            sweep_dir, synthetic_data_dir, "--sweep=config.optimizer.clip_norm=[1.0,-1.0]"
        ),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "optimizer.clip_norm=-1.0 must be > 0" in result.stderr
    assert not sweep_dir.exists()


def test_slurm_array_script_runs_the_task_ids_trial(tmp_path):
    trials = [{"seed": 0}, {"seed": 1, "model.cell": "it's"}]
    sweep = Sweep(["--config=experiments/x.py"], trials, tmp_path / "s")
    names = [t["name"] for t in sweep.trials]
    script = sweep.slurm_script(sweep.trials, parallel=2, sbatch_options=["--time=00:10:00"])
    assert "#SBATCH --array=0-1%2" in script and "#SBATCH --time=00:10:00" in script
    # Warned before its time runs out, and requeued (the script requeues itself then).
    assert "#SBATCH --requeue" in script and "#SBATCH --signal=B:USR1@" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    # What task 1 would run: the script with its `eval` turned into `echo`.
    shown = subprocess.run(
        ["bash"],
        input=script.replace('eval "exec $line" &', 'echo "$line"; exit'),
        env={"SLURM_ARRAY_TASK_ID": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    # The line eval would run: trial 1's command, quoted for the shell.
    assert shown.stdout.strip() == shlex.join(sweep.command([sweep.trials[1]]))
    assert f"--workdir={tmp_path / 's' / names[1]}" in shown.stdout


def slurm_cluster_up() -> bool:
    """A cluster answers with a usable node (installed binaries alone are not enough)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return False
    try:
        states = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10
        ).stdout
    except subprocess.TimeoutExpired:
        return False
    return any(state in states for state in ("idle", "mixed", "allocated"))


@pytest.mark.slow
@pytest.mark.skipif(not slurm_cluster_up(), reason="no running SLURM cluster here")
def test_slurm_backend_runs_a_tiny_array_on_the_local_cluster(synthetic_data_dir, tmp_path):
    """Needs a running cluster: tests/slurm/start_local_cluster.sh (root) starts one."""
    sweep_dir = tmp_path / "sweep"
    axis = "--sweep=config.optimizer.learning_rate=[0.01,1e9]"  # the second one fails
    command = sweep_command(
        sweep_dir, synthetic_data_dir, axis, "--config.optimizer.name=sgd", "--backend=slurm"
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 3, result.stderr[-3000:]
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    assert [t["status"] for t in manifest["trials"]] == ["done", "failed"]
    assert "non-finite" in manifest["trials"][1]["error"]
    assert (sweep_dir / manifest["trials"][0]["name"] / "metrics.jsonl").is_file()
    assert "Best: **000_" in (sweep_dir / "summary.md").read_text()


def test_units_group_up_to_vmap_trials_with_one_key(tmp_path):
    groups = ["x", "y", "x", "x", "x"]
    sweep = Sweep([], [{"seed": i} for i in range(5)], tmp_path, vmap=2, groups=groups)
    units = sweep.units(sweep.trials)
    assert [[t["overrides"]["seed"] for t in unit] for unit in units] == [[0, 2], [1], [3, 4]]


def test_overrides_apply_to_a_copy_and_unknown_keys_are_refused():
    from jaxdl.configs import base_config

    config = base_config()
    trial = sweeps.apply_overrides(config, {"optimizer.learning_rate": 0.5, "seed": 3})
    assert (trial.optimizer.learning_rate, trial.seed) == (0.5, 3)
    assert config.optimizer.learning_rate != 0.5
    with pytest.raises(UserError, match=r"unknown config key 'optimizer\.lr'"):
        sweeps.apply_overrides(config, {"optimizer.lr": 0.5})


@pytest.mark.slow
def test_vmapped_sweep_runs_a_group_in_one_process_and_records_its_failure(
    synthetic_data_dir, tmp_path
):
    sweep_dir = tmp_path / "sweep"
    flags = (
        "--sweep=config.optimizer.learning_rate=[0.01,0.03,1e9]",
        "--config.optimizer.name=sgd",
        "--config.sweep.vmap=3",
    )
    command = sweep_command(sweep_dir, synthetic_data_dir, *flags)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 3, result.stderr[-3000:]
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    assert [t["status"] for t in manifest["trials"]] == ["done", "done", "failed"]
    assert manifest["trials"][2]["error"].startswith("non-finite train/")
    assert len(list(sweep_dir.glob("*.trials.json"))) == 1  # one process for the three
    assert {t["log"] for t in manifest["trials"]} == {manifest["trials"][0]["name"] + ".log"}
    for trial in manifest["trials"][:2]:
        rows = [json.loads(line) for line in (sweep_dir / trial["name"] / "metrics.jsonl").open()]
        assert rows[-1]["step"] == 6


@pytest.mark.slow
def test_a_trial_stopped_by_a_signal_is_interrupted_not_done(tmp_path):
    # Ctrl-C reaches the trainers too: they save, exit 0 and leave stopped.txt; a rerun of
    # the sweep must resume them, not skip them as done (a local process's exit 0 and a
    # SLURM task's COMPLETED both end ok: one rule).
    sweep = Sweep(["--config=x.py"], [{}], tmp_path)
    (tmp_path / "000").mkdir()
    trial = sweep.trials[0]
    for stopped, status in ((True, "interrupted"), (False, "done")):
        if stopped:
            (tmp_path / "000" / STOPPED_FILE).write_text("stopped by SIGINT at step 5\n")
        else:
            (tmp_path / "000" / STOPPED_FILE).unlink()
        trial["wall_s"] = 1.0
        sweep.settle(trial, ended_ok=True, cut=False, error=str)
        assert trial["status"] == status


def test_killing_the_runner_stops_its_trainers_and_a_rerun_resumes(synthetic_data_dir, tmp_path):
    import os
    import signal
    import time

    from jaxdl.train.rundir import lock_holder

    sweep_dir = tmp_path / "sweep"
    command = sweep_command(
        sweep_dir,
        synthetic_data_dir,
        "--sweep=config.seed=[0]",
        "--config.train.num_steps=1000000",
        "--config.train.checkpoint_every=0",
    )
    runner = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    workdir = sweep_dir / "000_seed=0"
    # Until it has trained: metrics.jsonl exists from the start, and a trainer stopped
    # before its first step has nothing to save (seen on a loaded machine).
    wait_for_rows(workdir)
    deadline = time.time() + 120
    holder = lock_holder(workdir)
    assert holder is not None and holder != runner.pid
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    while lock_holder(workdir) is not None and time.time() < deadline:
        time.sleep(0.2)
    assert lock_holder(workdir) is None  # the orphan saw SIGTERM, saved and exited
    steps = [p.name for p in (workdir / "checkpoints").iterdir()]
    assert len(steps) == 1 and steps[0].isdigit()  # one complete checkpoint, no tmp


def test_slurm_trials_of_n_tasks_run_as_one_job_each(tmp_path):
    sweep = Sweep(["--config=experiments/x.py"], [{"seed": 0}], tmp_path / "s")
    script = sweep.slurm_script(sweep.trials, parallel=1, sbatch_options=[], tasks_per_trial=2)
    assert "#SBATCH --ntasks=2" in script
    line = next(x for x in script.splitlines() if "launch/train.py" in x)
    assert line.startswith("srun --ntasks=2 --kill-on-bad-exit=1 ")
    assert line.endswith(" --jax_distributed")
    single = sweep.slurm_script(sweep.trials, parallel=1, sbatch_options=[])
    assert "--ntasks" not in single and "--jax_distributed" not in single


@pytest.mark.slow
@pytest.mark.skipif(not slurm_cluster_up(), reason="no running SLURM cluster here")
def test_slurm_runs_one_training_as_two_processes(synthetic_data_dir, tmp_path):
    """Needs a running cluster: tests/slurm/start_local_cluster.sh (root) starts one."""
    import time

    workdir = tmp_path / "run"
    submitted = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--ntasks=2",
            f"--output={tmp_path}/slurm.out",
            str(ROOT / "launch" / "slurm_train.sh"),
            f"--config={ROOT}/experiments/fashion_cnn_tiny.py",
            f"--workdir={workdir}",
            f"--config.data.data_dir={synthetic_data_dir}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    deadline = time.time() + 500
    while (
        time.time() < deadline
        and subprocess.run(
            ["squeue", "-h", "-j", job], capture_output=True, text=True
        ).stdout.strip()
    ):
        time.sleep(2)
    log = (tmp_path / "slurm.out").read_text()
    assert log.count("stopped at step 20: done") == 2, log[-3000:]  # both processes
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").open()]
    assert rows[-1]["step"] == 20 and "eval/accuracy" in rows[-1]


def test_a_finished_sweep_grows_when_values_are_added(tmp_path):
    """Before: 'holds a different sweep ...; use another --sweep_dir'."""
    first = Sweep(["--config=x.py"], [{"seed": 0, "model.dense": 8}], tmp_path)
    first.trials[0].update(status="done", wall_s=3.0)
    first.save()
    grid = sweeps.grid(seed=[0, 1], **{"model.dense": [8, 16]})  # a value on each axis
    grown = Sweep(["--config=x.py"], grid, tmp_path)
    assert [(t["name"], t["status"]) for t in grown.trials] == [
        ("000_seed=0_dense=8", "done"),  # kept, with its workdir and result
        ("001_seed=0_dense=16", "pending"),
        ("002_seed=1_dense=8", "pending"),
        ("003_seed=1_dense=16", "pending"),
    ]
    assert grown.trials[0]["wall_s"] == 3.0
    grown.save()
    with pytest.raises(UserError, match="holds 3 trials this sweep lacks"):
        Sweep(["--config=x.py"], [{"seed": 0, "model.dense": 8}], tmp_path)
    with pytest.raises(UserError, match="holds a sweep of other config args"):
        Sweep(["--config=y.py"], grid, tmp_path)


def finished_trials(sweep_dir, finals: dict, status: dict) -> Sweep:
    """A sweep over the learning rate whose trials logged eval/loss and eval/accuracy."""
    trials = [{"optimizer.learning_rate": lr} for lr in finals]
    sweep = Sweep(["--config=x.py"], trials, sweep_dir)
    for trial, (lr, loss) in zip(sweep.trials, finals.items(), strict=True):
        rows = [{"step": 4, "eval/loss": 9.0}, {"step": 8, "eval/loss": loss, "eval/accuracy": lr}]
        (sweep_dir / trial["name"]).mkdir(parents=True)
        (sweep_dir / trial["name"] / "metrics.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows)
        )
        trial["status"] = status.get(lr, "done")
    return sweep


def test_the_summary_shows_every_final_eval_metric(tmp_path):
    from jaxdl.sweeps import runner

    sweep = finished_trials(tmp_path, {0.01: 0.5, 0.02: 0.4}, {})
    best = runner.write_summary(sweep, "eval/loss", "min")
    assert best["trial"] == "001_learning_rate=0.02"
    header, _, *rows = (tmp_path / "summary.md").read_text().splitlines()[2:6]
    assert "final eval/loss | best eval/loss | final eval/accuracy" in header
    assert rows[1].startswith("| 001_learning_rate=0.02 | 0.02 | done | 0.4 | 0.4 | 0.02 |")


def test_the_summary_plot_keeps_pruned_trials_apart_on_a_log_axis(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from jaxdl.sweeps import runner, summary

    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: drawn.append(fig))
    finals = {0.001: 0.5, 0.002: 0.4, 0.004: 2.0}  # spans 4x: drawn linearly unless told
    sweep = finished_trials(tmp_path, finals, {0.004: "pruned"})
    rows, _ = runner.summarize(sweep, "eval/loss", "min")
    lr = "optimizer.learning_rate"
    for log_axes, scale in (((), "linear"), ((lr,), "log")):
        summary.plot_axes(tmp_path, rows, [lr], "eval/loss", log_axes)
        (ax,) = drawn.pop().axes
        assert ax.get_xscale() == scale
        finished, pruned = (c.get_offsets().tolist() for c in ax.collections)
        assert finished == [[0.001, 0.5], [0.002, 0.4]]
        assert pruned == [[0.004, 2.0]]
        assert [t.get_text() for t in ax.get_legend().get_texts()][1].startswith("pruned")


def release_when_requeued(task: str, timeout: float = 120) -> None:
    """Once `task` waits in the queue again (SLURM holds a requeued job back a while),
    lets it start (2 s later: a credential made within the second of its requeue is
    refused as revoked)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        listed = subprocess.run(
            ["squeue", "-h", "-j", task, "-o", "%T %r"], capture_output=True, text=True
        ).stdout
        if "PENDING" in listed:
            time.sleep(2)
            subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], check=True)
            return
        time.sleep(0.2)
    raise AssertionError(f"{task} was not requeued")


def wait_for_text(path, text: str, count: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{path} never said {text!r} {count} times")


def wait_for_step(workdir, step: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while max((r["step"] for r in read_metrics(workdir)), default=0) < step:
        assert time.time() < deadline, f"{workdir} never reached step {step}"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.skipif(not slurm_cluster_up(), reason="no running SLURM cluster here")
def test_a_slurm_trial_whose_time_runs_out_or_is_preempted_comes_back_by_itself(
    synthetic_data_dir, tmp_path
):
    """Needs a running cluster: tests/slurm/start_local_cluster.sh (root) starts one. The
    trial is warned that its time runs out (USR1 to its batch shell, what --signal sends
    before the time limit), then requeued by SLURM as a preemption does; each time it
    saves, goes back to the queue and resumes, and the sweep ends with it done."""
    sweep_dir, steps = tmp_path / "sweep", 400
    command = sweep_command(
        sweep_dir,
        synthetic_data_dir,
        "--sweep=config.seed=[0]",
        "--backend=slurm",
        f"--config.train.num_steps={steps}",
        "--config.train.eval_every=200",
        "--config.train.checkpoint_every=0",  # only the checkpoints the signals save
    )
    runner = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    workdir, log = sweep_dir / "000_seed=0", sweep_dir / "slurm" / "0.err"
    wait_for_rows(workdir)
    task = json.loads((sweep_dir / "sweep.json").read_text())["trials"][0]["slurm_job"] + "_0"
    subprocess.run(["scancel", "--signal=USR1", "--batch", task], check=True)
    release_when_requeued(task)
    wait_for_text(log, "resumed from step", 1)
    stopped_at = int(re.search(r"resumed from step (\d+)", log.read_text()).group(1))
    wait_for_step(workdir, stopped_at + 5)  # training again (stopping, it saves)
    subprocess.run(["scontrol", "requeue", task], check=True)  # preempted
    release_when_requeued(task)
    _, stderr = runner.communicate(timeout=600)
    assert runner.returncode == 0, stderr[-3000:]
    print(log.read_text())  # (pytest -s shows the three lives of the task)
    text = log.read_text()
    assert text.count("stopped at step") == 3 and text.count("resumed from step") == 2
    assert "time limit near: saved; requeued" in text
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    assert manifest["trials"][0]["status"] == "done"
    rows = read_metrics(workdir)
    logged = [r["step"] for r in rows if "stop" not in r]
    assert logged == list(range(5, steps + 1, 5))  # one trajectory, as a straight run's
