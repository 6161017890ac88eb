"""Cross-validation bookkeeping: the runs of a fold x seed sweep and the per-fold table
(the end-to-end run with models, vmapped seeds and the ensemble: test_han_e2e.py)."""

import json
import statistics

import pytest

from jaxdl.evaluation import crossval
from jaxdl.sweeps import runner as sweep_lib


def test_one_seed_keeps_fold_only_runs():
    assert crossval.trials([0, 4], [0]) == [{"data.fold": 0}, {"data.fold": 4}]


def test_seeds_vary_within_each_fold():
    assert crossval.trials([2, 5], [7, 8]) == [
        {"data.fold": 2, "seed": 7},
        {"data.fold": 2, "seed": 8},
        {"data.fold": 5, "seed": 7},
        {"data.fold": 5, "seed": 8},
    ]


def finished_sweep(tmp_path, trials, finals, statuses):
    """A sweep whose runs logged two evals each, the last one `finals[i]`."""
    sweep = sweep_lib.Sweep(["--config=x.py"], trials, tmp_path)
    for trial, final, status in zip(sweep.trials, finals, statuses, strict=True):
        workdir = tmp_path / trial["name"]
        workdir.mkdir()
        rows = [{"step": 1, "eval/accuracy": 0.123}, {"step": 2, "eval/accuracy": final}]
        (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        trial.update(status=status, wall_s=10.0)
    return sweep


def test_summary_takes_each_fold_final_metric(tmp_path):
    trials = crossval.trials([0, 1, 2], [0])
    sweep = finished_sweep(tmp_path, trials, [0.8, 0.9, 0.5], ["done", "done", "failed"])
    text = crossval.write_summary(sweep, "eval/accuracy")
    summary = crossval.read_summary(tmp_path)
    assert [r["eval/accuracy"] for r in summary["folds"]] == [0.8, 0.9, None]
    assert summary["mean"] == pytest.approx(0.85)
    assert summary["std"] == pytest.approx(statistics.stdev([0.8, 0.9]))
    assert "ensemble_mean" not in summary and "0.8500 ± 0.0707" in text
    assert "over 2 of 3 folds" in text


def test_a_fold_counts_only_when_all_its_seeds_are_done(tmp_path):
    trials = crossval.trials([0, 1], [0, 1])
    statuses = ["done", "failed", "failed", "interrupted"]
    sweep = finished_sweep(tmp_path, trials, [0.8, 0.7, 0.9, 0.6], statuses)
    rows = crossval.fold_rows(sweep, "eval/accuracy")
    assert [r["status"] for r in rows] == ["done/failed", "failed/interrupted"]
    assert [r["eval/accuracy"] for r in rows] == [None, None]
    assert rows[0]["runs"] == [None, None] and rows[0]["ensemble/accuracy"] is None
    assert rows[0]["wall_s"] == 20.0
