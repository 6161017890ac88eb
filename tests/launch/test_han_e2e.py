"""End-to-end: cross-validation of the tiny HAN experiment on a synthetic review
polarity archive (two folds, two vmapped seeds each, with a weight average), then the
attention pages of one fold's run."""

import json
import re

import pytest

from jaxdl.evaluation import crossval
from tests.conftest import ROOT, run_script

pytestmark = pytest.mark.slow


def run(script, *args):
    return run_script(script, *args, timeout=600)


def test_crossval_then_attention_pages(polarity_data_dir, tmp_path):
    cv_dir = tmp_path / "cv"
    result = run(
        "launch/crossval.py",
        f"--config={ROOT}/experiments/polarity_han_tiny.py",
        f"--config.data.data_dir={polarity_data_dir}",
        f"--cv_dir={cv_dir}",
        "--folds=0,4",
        "--seeds=2",
        "--config.sweep.vmap=2",
        "--config.task.ema=0.9",  # the weight average through the trainer: donated, saved
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((cv_dir / "crossval.json").read_text())
    assert [r["fold"] for r in summary["folds"]] == [0, 4]
    quarters = (0.0, 0.25, 0.5, 0.75, 1.0)  # 4 test reviews
    for row in summary["folds"]:
        assert len(row["runs"]) == 2 and all(a in quarters for a in row["runs"])
        assert row["eval/accuracy"] == pytest.approx(sum(row["runs"]) / 2)
        assert row["ensemble/accuracy"] in quarters
    accuracies = [r["eval/accuracy"] for r in summary["folds"]]
    assert summary["mean"] == pytest.approx(sum(accuracies) / 2)
    assert "eval/accuracy: " in result.stdout and "ensemble/accuracy: " in result.stdout
    run_json = json.loads((cv_dir / "002_fold=4_seed=0" / "run.json").read_text())["data"]
    assert run_json["fold"] == 4 and run_json["num_eval"] == 4
    assert 0 < run_json["truncated_share"]["train"] < 1

    # An ensemble of one run with itself predicts what the run's own eval scored.
    workdir = cv_dir / "002_fold=4_seed=0"
    assert crossval.ensemble_accuracy([workdir, workdir]) == summary["folds"][1]["runs"][0]

    result = run("launch/attention.py", f"--workdir={workdir}", "--num_docs=3")
    assert result.returncode == 0, result.stderr[-3000:]
    pages = sorted(p.name for p in (workdir / "attention").iterdir())
    assert len(pages) == 4 and "index.html" in pages
    assert all(re.fullmatch(r"cv4\d\d_\d+\.html|index\.html", p) for p in pages)
    page = (workdir / "attention" / pages[0]).read_text()
    assert "predicted <b>" in page and 'class="word" data-weight=' in page

    result = run("launch/attention.py", f"--workdir={tmp_path}", "--num_docs=3")
    assert result.returncode == 1 and "error: " in result.stderr


def test_crossval_folds_that_are_not_integers_end_with_one_error_line(tmp_path):
    result = run(
        "launch/crossval.py",
        f"--config={ROOT}/experiments/polarity_han_tiny.py",
        f"--cv_dir={tmp_path / 'cv'}",
        "--folds=0,x",
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "error: --folds=0,x must be integers (invalid literal for int() with base 10: 'x')"
    )
