"""Adaptive search: seeded proposals, pruning with a checkpoint, a resumed study."""

import subprocess
import sys

import numpy as np
import pytest

from jaxdl import sweeps
from jaxdl.errors import UserError
from jaxdl.losses import Mean
from jaxdl.sweeps import search
from jaxdl.train import hooks as hooks_lib
from jaxdl.train.loop import REQUESTED, Loop, fit
from jaxdl.train.writers import read_metrics
from tests.conftest import ROOT
from tests.train.test_loop import RecordingRunDir, batches, steps

SPACE = {
    "optimizer.learning_rate": sweeps.loguniform(1e-4, 1e-1),
    "model.dense": sweeps.integer(8, 64),
    "optimizer.name": sweeps.choice(["adam", "sgd"]),
}


def proposals(sweep_dir, seed: int) -> list[dict]:
    runner = search.Search(
        ["--config=x.py"], sweep_dir, SPACE, 8, "eval/loss", "min", seed, startup_trials=3
    )
    runner._active, runner._given, made = [], set(), []
    for _ in range(8):  # a made-up objective, told back so that TPE learns from it
        (record,) = runner._next()
        made.append(record["overrides"])
        value = abs(np.log10(record["overrides"]["optimizer.learning_rate"]) + 2.5)
        runner.study.tell(record["trial"], value)
    assert runner._next() is None  # the study holds its 8 trials
    return made


def test_a_seeded_sampler_proposes_the_same_trials(tmp_path):
    first = proposals(tmp_path / "a", seed=3)
    assert first == proposals(tmp_path / "b", seed=3)
    assert first != proposals(tmp_path / "c", seed=4)
    assert all(8 <= t["model.dense"] <= 64 and isinstance(t["model.dense"], int) for t in first)
    assert {t["optimizer.name"] for t in first} <= {"adam", "sgd"}


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
        search.Search(["--config=x.py"], tmp_path, SPACE, 8, "eval/loss", "min", vmap=4)


def test_a_vmapped_search_asks_its_groups_and_resumes_them_together(tmp_path):
    space = {"optimizer.learning_rate": sweeps.loguniform(1e-4, 1e-1)}
    make = lambda: search.Search(["--config=x.py"], tmp_path, space, 5, "eval/loss", "min", vmap=2)
    runner = make()
    runner._active, runner._given = [], set()
    units = [runner._next() for _ in range(3)]
    assert [[r["trial"].number for r in unit] for unit in units] == [[0, 1], [2, 3], [4]]
    assert runner._next() is None  # the study holds its 5 trials
    runner.study.tell(units[1][0]["trial"], 0.5)  # one of the second group finished
    # The search was killed: a new one resumes each group's unfinished trials together.
    again = make()
    again._active, again._given = [], set()
    resumed = [[r["trial"].number for r in again._next()] for _ in range(3)]
    assert resumed == [[0, 1], [3], [4]]
    assert again._next() is None


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
    report = search.SearchReport(
        search.storage_url(tmp_path), "jaxdl", [trial._trial_id], "eval/loss", "median", prune_after
    )

    def evaluate(state):  # this trial's eval loss: far above the others'
        return {"loss": Mean(np.float32(9.0), np.float32(1))}

    outputs = RecordingRunDir()
    hooks = [
        hooks_lib.Evaluate(2, evaluate),
        hooks_lib.Checkpoint(7),
        report,
    ]
    loop = Loop(0, 0, 100, outputs, {"next_batch": 0, "elapsed_s": 0.0})
    fit(steps(), loop, batches(), hooks)
    assert loop.stop.kind == REQUESTED and loop.step == stop
    assert [s for s, _, _ in outputs.saves] == [*range(7, stop, 7), stop]  # + the stop's
    frozen = study.trials[trial.number]
    assert frozen.state.name == "PRUNED"
    assert frozen.intermediate_values == dict.fromkeys(range(2, stop + 1, 2), 9.0)


def search_with_bad_last_trial(synthetic_data_dir, sweep_dir, lrs: tuple, *flags: str):
    """The launch/sweep.py command of a 12-step SGD search (evals at 4, 8, 12) over the
    learning rate whose trials are `lrs`, in order (enqueued), and the study's base args."""
    base = [
        f"--config={ROOT}/experiments/fashion_cnn_tiny.py",
        f"--config.data.data_dir={synthetic_data_dir}",
        "--config.train.num_steps=12",
        "--config.train.eval_every=4",
        "--config.optimizer.name=sgd",
        *flags,
    ]
    study = search.open_study(sweep_dir, base, "min", 0, "median")
    for lr in lrs:
        study.enqueue_trial({"optimizer.learning_rate": lr})
    command = [
        sys.executable,
        str(ROOT / "launch" / "sweep.py"),
        *base,
        f"--sweep_dir={sweep_dir}",
        "--search=optuna",
        f"--trials={len(lrs)}",
        "--space=config.optimizer.learning_rate=loguniform(1e-9,1.0)",
    ]
    return command, base


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
    assert sorted(p.name for p in sweep_dir.glob("*.trials.json")) == [
        "000_learning_rate=0.05.trials.json",  # one vmapped run per group
        "002_learning_rate=0.05.trials.json",
        "004_learning_rate=1e-09.trials.json",
    ]
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
