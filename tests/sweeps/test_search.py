"""Adaptive search: seeded proposals, pruning with a checkpoint, a resumed study."""

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxdl import sweeps
from jaxdl.errors import UserError
from jaxdl.losses import Mean
from jaxdl.sweeps import search, study
from jaxdl.train import hooks as hooks_lib
from jaxdl.train.loop import REQUESTED, Loop, fit
from jaxdl.train.writers import read_metrics
from tests.conftest import ROOT
from tests.sweeps.test_sweeps import slurm_cluster_up
from tests.train.test_loop import RecordingRunDir, batches, steps

SPACE = {
    "optimizer.learning_rate": sweeps.loguniform(1e-4, 1e-1),
    "model.dense": sweeps.integer(8, 64),
    "optimizer.name": sweeps.choice(["adam", "sgd"]),
}


def book(sweep_dir, space=SPACE, run_id=None, worker=0, **options) -> study.Study:
    """The bookkeeping of a search of `space` in sweep_dir (options: SearchOptions')."""
    options = study.SearchOptions(**options)
    return study.Study(sweep_dir, ["--config=x.py"], space, options, run_id, worker)


def numbers(unit) -> list[int]:
    return [record["trial"].number for record in unit]


def proposals(sweep_dir, seed: int) -> list[dict]:
    runner = book(sweep_dir, num_trials=8, seed=seed, startup_trials=3)
    made = []
    for _ in range(8):  # a made-up objective, told back so that TPE learns from it
        (record,) = runner.next_unit()
        made.append(record["overrides"])
        value = abs(np.log10(record["overrides"]["optimizer.learning_rate"]) + 2.5)
        runner.optuna.tell(record["trial"], value)
    assert runner.next_unit() is None  # the study holds its 8 trials
    return made


def test_a_seeded_sampler_proposes_the_same_trials(tmp_path):
    first = proposals(tmp_path / "a", seed=3)
    assert first == proposals(tmp_path / "b", seed=3)
    assert first != proposals(tmp_path / "c", seed=4)
    assert all(8 <= t["model.dense"] <= 64 and isinstance(t["model.dense"], int) for t in first)
    assert {t["optimizer.name"] for t in first} <= {"adam", "sgd"}


def test_the_workers_of_a_search_draw_apart(tmp_path):
    """Each worker has its own sampler; seeded alike, two workers proposed the same
    trials in turn (every trial twice)."""
    run_id = f"{time.time():.6f}"
    first = lambda worker, sweep_dir: book(
        sweep_dir, run_id=run_id, worker=worker, num_trials=8, seed=3
    ).next_unit()[0]["overrides"]
    assert first(0, tmp_path / "a") != first(1, tmp_path / "a")
    assert first(1, tmp_path / "b") == first(1, tmp_path / "c")  # seeded


def test_a_study_belongs_to_one_command(tmp_path):
    search.open_study(tmp_path, ["--config=a.py"], "min", 0, "median")
    with pytest.raises(UserError, match="holds a search of another command"):
        search.open_study(tmp_path, ["--config=b.py"], "min", 0, "median")


def test_space_flags_parse_into_the_random_search_distributions():
    assert sweeps.parse_distribution("config.optimizer.learning_rate=loguniform(1e-4,1e-2)") == (
        "optimizer.learning_rate",
        ("loguniform", 1e-4, 1e-2),
    )
    assert sweeps.parse_distribution("config.model.dense=int(8,64)")[1] == ("int", 8, 64)
    assert sweeps.parse_distribution("config.optimizer.name=choice(['adam','sgd'])")[1] == (
        "choice",
        ["adam", "sgd"],
    )
    for bad in ("config.x=normal(0,1)", "config.x=loguniform(1e-2,1e-4)", "config.x"):
        with pytest.raises(UserError):
            sweeps.parse_distribution(bad)


def test_a_vmapped_search_varies_only_what_a_vmapped_step_takes_per_trial(tmp_path):
    with pytest.raises(UserError, match=r"vmapped trials may differ only in seed, .*model.dense"):
        book(tmp_path, num_trials=8, vmap=4)


def test_a_vmapped_search_asks_its_groups_and_resumes_them_together(tmp_path):
    space = {"optimizer.learning_rate": sweeps.loguniform(1e-4, 1e-1)}
    make = lambda: book(tmp_path, space, num_trials=5, vmap=2)
    runner = make()
    units = [runner.next_unit() for _ in range(3)]
    assert [numbers(unit) for unit in units] == [[0, 1], [2, 3], [4]]
    assert runner.next_unit() is None  # the study holds its 5 trials
    runner.optuna.tell(units[1][0]["trial"], 0.5)  # one of the second group finished
    # The search was killed: a new one resumes each group's unfinished trials together.
    again = make()
    resumed = [numbers(again.next_unit()) for _ in range(3)]
    assert resumed == [[0, 1], [3], [4]]
    assert again.next_unit() is None


def test_workers_of_one_run_take_a_killed_runs_trials_once_and_not_each_others(tmp_path):
    space = {"optimizer.learning_rate": sweeps.loguniform(1e-4, 1e-1)}
    make = lambda trials, run_id=None, worker=0: book(
        tmp_path, space, run_id, worker, num_trials=trials
    )
    killed = make(3)
    assert [numbers(killed.next_unit()) for _ in range(3)] == [[0], [1], [2]]
    # The command again, with two workers: each of the killed run's trials goes to one.
    run_id = f"{time.time():.6f}"
    a, b = make(5, run_id, 0), make(5, run_id, 1)
    taken = [a.next_unit(), b.next_unit(), a.next_unit()]
    assert [numbers(unit) for unit in taken] == [[0], [1], [2]]
    assert a.work_left()  # room for 2 more
    # New trials: a's is not a killed run's for b, which asks its own.
    assert numbers(a.next_unit()) == [3]
    assert numbers(b.next_unit()) == [4]
    assert b.next_unit() is None and not a.work_left()


def test_a_dead_workers_trials_fail_with_its_error_and_no_others(tmp_path):
    space = {"optimizer.learning_rate": sweeps.loguniform(1e-4, 1e-1)}
    runner = book(tmp_path, space, num_trials=3)
    mine, other, _ = (runner.next_unit()[0]["trial"].number for _ in range(3))
    runner.claim_file(other).write_text("1 1")  # worker 1's, another pid
    assert runner.fail_trials_of(os.getpid(), "its worker died (-9)") == [mine, 2]
    states = {t.number: t.state.name for t in runner.optuna.trials}
    assert states == {mine: "FAIL", other: "RUNNING", 2: "FAIL"}
    assert runner.optuna.trials[mine].user_attrs["error"] == "its worker died (-9)"


# (prune_after, the step it stops at): at its first eval, or at the first past 60 of 100.
@pytest.mark.parametrize("prune_after, stop", [(0.0, 2), (0.6, 60)])
def test_a_trial_whose_metric_lags_is_pruned_and_stops_with_a_checkpoint(
    tmp_path, prune_after, stop
):
    study = search.open_study(tmp_path, ["--config=x.py"], "min", 0, "median")
    for _ in range(2):  # two finished trials with low eval losses at every second step
        trial = study.ask()
        for step in range(2, 101, 2):
            trial.report(0.5, step)
        study.tell(trial, 0.5)
    trial = study.ask()
    report = search.SearchReport([trial], "eval/loss", "median", prune_after)

    def evaluate(state):  # this trial's eval loss: far above the others'
        return {"loss": Mean(np.float32(9.0), np.float32(1))}

    outputs = RecordingRunDir()
    hooks = [
        hooks_lib.Evaluate(2, evaluate),
        hooks_lib.Checkpoint(7),
        report,
    ]
    loop = Loop(0, 0, 100, outputs, {"next_batch": 0, "elapsed_s": 0.0}, eval_every=2)
    fit(steps(), loop, batches(), hooks)
    assert loop.stop.kind == REQUESTED and loop.step == stop
    assert [s for s, _, _ in outputs.saves] == [*range(7, stop, 7), stop]  # + the stop's
    frozen = study.trials[trial.number]
    assert frozen.state.name == "PRUNED"
    assert frozen.intermediate_values == dict.fromkeys(range(2, stop + 1, 2), 9.0)


LR_SPACE = "config.optimizer.learning_rate=loguniform(1e-9,1.0)"


def tiny_sgd(synthetic_data_dir, *flags: str) -> list[str]:
    """The --config args of a 12-step SGD run with evals at steps 4, 8 and 12."""
    return [
        f"--config={ROOT}/experiments/fashion_cnn_tiny.py",
        f"--config.data.data_dir={synthetic_data_dir}",
        "--config.train.num_steps=12",
        "--config.train.eval_every=4",
        "--config.optimizer.name=sgd",
        *flags,
    ]


def search_command(sweep_dir, base: list, space: str, trials: int, enqueued=()) -> list[str]:
    """The launch/sweep.py command of a search of `trials` over `space` with the --config
    args `base`; the study is made first when trials are `enqueued` (asked first, in order)."""
    if enqueued:
        study = search.open_study(sweep_dir, base, "min", 0, "median")
        for params in enqueued:
            study.enqueue_trial(params)
    return [
        sys.executable,
        str(ROOT / "launch" / "sweep.py"),
        *base,
        f"--sweep_dir={sweep_dir}",
        "--search=optuna",
        f"--trials={trials}",
        f"--space={space}",
    ]


def search_with_bad_last_trial(synthetic_data_dir, sweep_dir, lrs: tuple, *flags: str):
    """The command of a search whose trials are `lrs`, in order, and its base args."""
    base = tiny_sgd(synthetic_data_dir, *flags)
    enqueued = [{"optimizer.learning_rate": lr} for lr in lrs]
    return search_command(sweep_dir, base, LR_SPACE, len(lrs), enqueued), base


@pytest.mark.slow
def test_a_bad_search_is_one_line_before_any_study(synthetic_data_dir, tmp_path):
    """A config no trial could train is refused before sweep_dir holds a study of it (which
    would make the corrected command 'a search of another command')."""
    sweep_dir = tmp_path / "search"
    space = "config.optimizer.weight_decay=uniform(-1,0)"
    result = subprocess.run(
        search_command(sweep_dir, tiny_sgd(synthetic_data_dir), space, 1),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 1
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "optimizer.weight_decay=-1" in line and "must be >= 0" in line
    assert not (sweep_dir / search.STUDY_FILE).exists()


@pytest.mark.slow
def test_a_search_prunes_resumes_and_summarises(synthetic_data_dir, tmp_path):
    sweep_dir = tmp_path / "search"
    # Two good trials first, then a learning rate that cannot learn: the median pruner
    # stops it at its first eval, with a checkpoint.
    command, _ = search_with_bad_last_trial(synthetic_data_dir, sweep_dir, (0.05, 0.05, 1e-9))
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = (sweep_dir / "summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| 00")]
    assert [r.split(" | ")[2] for r in rows] == ["done", "done", "pruned"]
    pruned = next(sweep_dir.glob("002_*"))
    checkpoints = [p.name for p in (pruned / "checkpoints").iterdir()]
    assert checkpoints == ["4"]  # stopped at its first eval, saved there
    assert (sweep_dir / "history.png").is_file()
    # Again: the study is full; nothing runs again.
    before = sorted(p.stat().st_mtime for p in sweep_dir.glob("*/metrics.jsonl"))
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(p.stat().st_mtime for p in sweep_dir.glob("*/metrics.jsonl")) == before


@pytest.mark.slow
def test_a_vmapped_search_prunes_a_group_only_when_every_trial_lags(synthetic_data_dir, tmp_path):
    sweep_dir = tmp_path / "search"
    # Groups of two: two good trials; a good one and one with a learning rate that cannot
    # learn, which trains on with it (stopping it alone would save nothing); two that
    # cannot learn: the group stops at its first eval (step 4), with their checkpoints.
    command, base = search_with_bad_last_trial(
        synthetic_data_dir,
        sweep_dir,
        (0.05, 0.05, 0.05, 1e-9, 1e-9, 1e-9),
        "--config.train.plot=False",
        "--config.sweep.vmap=2",
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    logs = sorted(sweep_dir.glob("*.log"))  # one vmapped run per group, its log
    assert [p.name for p in logs] == [
        "000_learning_rate=0.05.log",
        "002_learning_rate=0.05.log",
        "004_learning_rate=1e-09.log",
    ]
    assert all("2 vmapped trials" in p.read_text() for p in logs)
    summary = (sweep_dir / "summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| 00")]
    assert [r.split(" | ")[2] for r in rows] == ["done"] * 4 + ["pruned"] * 2
    workdir = lambda number: next(p for p in sweep_dir.glob(f"{number}_*") if p.is_dir())
    evals = lambda number: [r["step"] for r in read_metrics(workdir(number)) if "eval/loss" in r]
    assert evals("003") == [4, 8, 12]  # the lagging trial of a mixed group
    for number in ("004", "005"):
        assert evals(number) == [4]
        assert [p.name for p in (workdir(number) / "checkpoints").iterdir()] == ["4"]
        assert read_metrics(workdir(number))[-1]["stop"] == "pruned by the search at step 4"
    frozen = search.open_study(sweep_dir, base, "min", 0, "median").trials
    assert [sorted(t.intermediate_values) for t in frozen[3:]] == [[4, 8, 12], [4], [4]]


DIES_AT_13 = """
import os
import signal

import flax.linen as nn

from jaxdl import registry


class Linear(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x, train, penultimate=False):
        return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


@registry.model("dies_at_13", family="classifier", width=16)
def build(cfg, info):
    if cfg.width == 13:  # its process dies, as if out of memory
        os.kill(os.getpid(), signal.SIGKILL)
    return Linear(len(info["class_names"]))
"""
EXPERIMENT = """
import dies_at_13  # registers the model

from experiments import fashion_cnn_tiny
from jaxdl import configs


def get_config():
    config = fashion_cnn_tiny.get_config()
    configs.switch(config, "model", "dies_at_13")
    return config
"""


@pytest.mark.slow
def test_trials_train_in_worker_processes_and_a_dead_worker_fails_only_its_trial(
    synthetic_data_dir, tmp_path
):
    code, sweep_dir = tmp_path / "code", tmp_path / "search"
    code.mkdir()
    (code / "dies_at_13.py").write_text(DIES_AT_13)
    (code / "experiment.py").write_text(EXPERIMENT)
    base = [
        f"--config={code / 'experiment.py'}",
        f"--config.data.data_dir={synthetic_data_dir}",
        "--config.train.num_steps=4",
        "--config.train.plot=False",
    ]
    # The first kills its worker; another worker takes the rest.
    widths = [{"model.width": width} for width in (13, 16, 17)]
    command = search_command(sweep_dir, base, "config.model.width=choice([16,13,17])", 3, widths)
    env = {**os.environ, "PYTHONPATH": str(code), "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert result.returncode == 3, result.stderr[-3000:]  # some trials failed
    rows = [x for x in (sweep_dir / "summary.md").read_text().splitlines() if x.startswith("| 00")]
    assert [r.split(" | ")[2] for r in rows] == ["failed", "done", "done"]
    study = search.open_study(sweep_dir, base, "min", 0, "median")
    assert study.trials[0].user_attrs["error"].startswith("its worker died (-9)")
    # Trials 1 and 2 trained one after the other in one process, the second worker's.
    workers = [
        re.search(r"worker (\d+):", (sweep_dir / f"00{n}_width={w}.log").read_text()).group(1)
        for n, w in ((1, 16), (2, 17))
    ]
    assert workers[0] == workers[1]
    assert sorted(p.name for p in (sweep_dir / "workers").iterdir()) == ["0.log", "1.log"]


@pytest.mark.slow
@pytest.mark.skipif(not slurm_cluster_up(), reason="no running SLURM cluster here")
def test_a_search_on_slurm_runs_array_tasks_as_workers(synthetic_data_dir, tmp_path):
    """Needs a running cluster: tests/slurm/start_local_cluster.sh (root) starts one."""
    sweep_dir, base = tmp_path / "search", tiny_sgd(synthetic_data_dir)
    command = search_command(sweep_dir, base, LR_SPACE, 4)
    result = subprocess.run(
        [*command, "--backend=slurm", "--parallel=2", "--pruner=none"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = search.open_study(sweep_dir, base, "min", 0, "median").trials
    assert [t.state.name for t in study] == ["COMPLETE"] * 4
    assert len({t.params["optimizer.learning_rate"] for t in study}) == 4  # drawn apart
    logs = [(sweep_dir / f"{t.user_attrs['name']}.log").read_text() for t in study]
    workers = {re.search(r"worker (\d+):", log).group(1) for log in logs}
    assert len(workers) == 2  # the two array tasks, each training its trials in process


def test_a_search_across_nodes_keeps_its_study_in_a_journal_file(tmp_path):
    """--backend=slurm's default: Optuna's journal file (fit for NFS), not SQLite; the
    sweep_dir's storage is kept when the command runs again; an RDB URL is taken as given."""
    space = {"optimizer.learning_rate": sweeps.loguniform(1e-4, 1e-1)}
    assert study.resolve_storage(tmp_path, "auto", several_nodes=True) == "journal"
    assert study.resolve_storage(tmp_path, "auto", several_nodes=False) == "auto"
    run_id = f"{time.time():.6f}"
    a, b = (book(tmp_path, space, run_id, w, num_trials=4, storage="journal") for w in (0, 1))
    assert numbers(a.next_unit()) == [0] and numbers(b.next_unit()) == [1]
    assert sorted(p.name for p in tmp_path.iterdir() if "study" in p.name) == ["study.journal"]
    again = book(tmp_path, space, num_trials=4)  # auto: the journal sweep_dir holds
    assert [t.number for t in again.optuna.trials] == [0, 1]
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    for sweep_dir in (tmp_path / "x", tmp_path / "y"):  # one database, a study each
        assert numbers(book(sweep_dir, space, storage=url, num_trials=2).next_unit()) == [0]
    with pytest.raises(UserError, match="--storage='nfs' is not one of"):
        book(tmp_path / "z", space, storage="nfs")


def test_a_requeued_slurm_worker_takes_back_the_trial_it_held(tmp_path):
    """Its trial stopped (saved, still RUNNING) when its time ran out; the task's next
    life, the same worker number in the same run, resumes it; another worker does not."""
    space = {"optimizer.learning_rate": sweeps.loguniform(1e-4, 1e-1)}
    run_id = f"{time.time():.6f}"
    first_life = book(tmp_path, space, run_id, 1, num_trials=2)
    (held,) = numbers(first_life.next_unit())
    first_life.claim_file(held).write_text("1 999999")  # (its pid in that life)
    other = book(tmp_path, space, run_id, 0, num_trials=2)
    assert numbers(other.next_unit()) == [1]  # a new trial, not worker 1's
    second_life = book(tmp_path, space, run_id, 1, num_trials=2)
    assert numbers(second_life.next_unit()) == [held]
    assert first_life.claim_file(held).read_text() == f"1 {os.getpid()}"
    assert second_life.next_unit() is None


def test_a_resumed_worker_does_not_draw_again_what_its_namesake_drew(tmp_path):
    """Before: a requeued SLURM worker (or worker 0 of the command run again) was seeded
    as its first life and proposed the same learning rate again."""
    space = {"optimizer.learning_rate": sweeps.loguniform(1e-4, 1e-1)}
    first = book(tmp_path, space, num_trials=4)
    (record,) = first.next_unit()
    first.optuna.tell(record["trial"], 0.5)
    (again,) = book(tmp_path, space, num_trials=4).next_unit()
    assert again["overrides"] != record["overrides"]


@pytest.mark.slow
@pytest.mark.skipif(not slurm_cluster_up(), reason="no running SLURM cluster here")
def test_a_slurm_search_worker_whose_time_runs_out_comes_back_with_its_trial(
    synthetic_data_dir, tmp_path
):
    """Needs a running cluster: tests/slurm/start_local_cluster.sh (root) starts one. The
    worker is warned (USR1 to its batch shell): its trial saves and stays RUNNING, the
    task is requeued, and its next life resumes that trial, then asks the next one."""
    from tests.sweeps.test_sweeps import release_when_requeued

    sweep_dir = tmp_path / "search"
    base = tiny_sgd(synthetic_data_dir, "--config.train.num_steps=400")
    command = search_command(sweep_dir, base, "config.optimizer.learning_rate=uniform(0.01,0.1)", 2)
    runner = subprocess.Popen(
        [*command, "--backend=slurm", "--parallel=1", "--pruner=none"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not any(read_metrics(p) for p in sweep_dir.glob("000_*") if p.is_dir()):
        assert time.time() < deadline, "the first trial never trained"
        time.sleep(0.2)
    (task,) = subprocess.run(
        ["squeue", "-h", "-o", "%i"], capture_output=True, text=True
    ).stdout.split()
    subprocess.run(["scancel", "--signal=USR1", "--batch", task], check=True)
    release_when_requeued(task)
    _, stderr = runner.communicate(timeout=600)
    assert runner.returncode == 0, stderr[-3000:]
    log = (sweep_dir / "slurm" / "0.err").read_text()
    assert "time limit near: saved; requeued" in log
    assert re.search(r"trial 000_\S+: interrupted", log) and "resumed from step" in log
    frozen = search.open_study(sweep_dir, base, "min", 0, "median").trials
    assert [t.state.name for t in frozen] == ["COMPLETE", "COMPLETE"]
    assert frozen[0].params != frozen[1].params
