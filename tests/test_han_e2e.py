"""End-to-end: cross-validation of the tiny HAN experiment on a synthetic review
polarity archive (two folds), then the attention pages of one fold's run."""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def run(script, *args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, str(ROOT / script), *args]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_crossval_then_attention_pages(polarity_data_dir, tmp_path):
    cv_dir = tmp_path / "cv"
    result = run(
        "launch/crossval.py",
        f"--config={ROOT}/experiments/polarity_han_tiny.py",
        f"--config.data.data_dir={polarity_data_dir}",
        f"--cv_dir={cv_dir}",
        "--folds=0,4",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((cv_dir / "crossval.json").read_text())
    assert [r["fold"] for r in summary["folds"]] == [0, 4]
    accuracies = [r["eval/accuracy"] for r in summary["folds"]]
    assert all(a in (0.0, 0.25, 0.5, 0.75, 1.0) for a in accuracies)  # 4 test reviews
    assert summary["mean"] == pytest.approx(sum(accuracies) / 2)
    assert "eval/accuracy: " in result.stdout and "±" in result.stdout
    run_json = json.loads((cv_dir / "001_fold=4" / "run.json").read_text())["data"]
    assert run_json["fold"] == 4 and run_json["num_eval"] == 4
    assert 0 < run_json["truncated_share"]["train"] < 1

    workdir = cv_dir / "001_fold=4"
    result = run("launch/attention.py", f"--workdir={workdir}", "--num_docs=3")
    assert result.returncode == 0, result.stderr[-3000:]
    pages = sorted(p.name for p in (workdir / "attention").iterdir())
    assert len(pages) == 4 and "index.html" in pages
    assert all(re.fullmatch(r"cv4\d\d_\d+\.html|index\.html", p) for p in pages)
    page = (workdir / "attention" / pages[0]).read_text()
    assert "predicted <b>" in page and 'class="word" data-weight=' in page

    result = run("launch/attention.py", f"--workdir={tmp_path}", "--num_docs=3")
    assert result.returncode == 1 and "error: " in result.stderr
