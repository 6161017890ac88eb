"""jaxdl from a notebook: the top-level API (imported when used), the progress line of a
run trained in process, and Ctrl-C there: a resumable run with stopped.txt."""

import importlib
import json
import logging
import os
import signal
import subprocess
import sys

import pytest

import jaxdl
from experiments import fashion_cnn_tiny
from jaxdl.train import Hook, read_metrics
from jaxdl.train.rundir import STOPPED_FILE
from tests.conftest import ROOT


def test_the_top_level_api_is_imported_when_used():
    code = "import sys, jaxdl, jaxdl.train; print('jax' in sys.modules, callable(jaxdl.train))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout == "False True\n"  # no JAX imported; the package is the function
    importlib.import_module("jaxdl.train.run")  # once imported, still callable

    assert callable(jaxdl.train) and jaxdl.train.__name__ == "jaxdl.train"
    assert jaxdl.load_run.__module__ == "jaxdl.train.run_info"
    assert jaxdl.base_config(model="mlp").model.name == "mlp"
    assert "testing" in dir(jaxdl) and "train" in jaxdl.__all__
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        jaxdl.trian  # noqa: B018


class CtrlC(Hook):
    """Ctrl-C in a notebook: SIGINT to this process after step `at` (heard after the
    next one: StopOnSignal looked at that step before this hook)."""

    def __init__(self, at: int):
        self.at = at

    def after_step(self, loop) -> None:
        if loop.step == self.at:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture
def unconfigured_logging():
    """Logging as a notebook has it: nothing configured, absl flags not parsed."""
    absl, root = logging.getLogger("absl"), logging.getLogger()
    levels = absl.level, root.level
    absl.setLevel(logging.NOTSET)
    root.setLevel(logging.WARNING)
    yield
    absl.setLevel(levels[0])
    root.setLevel(levels[1])


def test_in_process_a_run_shows_progress_and_ctrl_c_leaves_it_resumable(
    synthetic_data_dir, tmp_path, capsys, unconfigured_logging
):
    config = fashion_cnn_tiny.get_config()
    config.data.data_dir = str(synthetic_data_dir)
    jaxdl.configs.switch(config, "model", "mlp")  # a small model compiles fast
    config.model.hidden = (16,)
    config.train.update(num_steps=8, log_every=2, eval_every=8, checkpoint_every=0, plot=False)
    workdir = tmp_path / "run"
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's, as a notebook
    try:
        with pytest.raises(KeyboardInterrupt):
            jaxdl.train(config, workdir, hooks=[CtrlC(at=2)])
    finally:
        signal.signal(signal.SIGINT, handler)
    assert (workdir / STOPPED_FILE).read_text() == "stopped by SIGINT at step 3; resumable\n"
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["3"]
    err = capsys.readouterr().err
    assert "step 2/8 (25%)" in err and "steps/s" in err  # the progress line, in absl's form
    assert "] data fashion_mnist: 640 train, 250 eval" in err
    assert "orbax" not in err  # its lines about each save are left out
    assert logging.getLogger("absl").level == logging.NOTSET  # as it was before the run

    metrics = jaxdl.train(config, workdir)  # run again: it resumes
    assert not (workdir / STOPPED_FILE).exists()
    assert "resumed from step 3" in capsys.readouterr().err
    assert 0 <= metrics["accuracy"] <= 1
    rows = read_metrics(workdir)
    assert [r["step"] for r in rows] == [2, 3, 4, 6, 8] and rows[1]["stop"] == "SIGINT"

    # A run written before run.json recorded its modules still loads (jaxdl's own).
    record = json.loads((workdir / "run.json").read_text())
    assert record.pop("modules")["model"] == "jaxdl.models.mlp"
    (workdir / "run.json").write_text(json.dumps(record))
    loaded, _, _, state = jaxdl.load_run(workdir)
    assert loaded.model.to_dict() == {"name": "mlp", "hidden": [16], "dropout": 0.0}
    assert int(state.step) == 8
