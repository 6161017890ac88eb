"""Every launcher logs in one short form: no absl prefix on info lines, no note from
JAX's probe for a TPU (launch/_tool.py)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def launch(script: str, *args: str) -> subprocess.CompletedProcess:
    """A fresh process with JAX left to probe its platforms (no JAX_PLATFORMS)."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    command = [sys.executable, str(ROOT / script), *args]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_trainer_and_a_tool_log_short_lines_without_the_tpu_probe(synthetic_data_dir, tmp_path):
    workdir = tmp_path / "run"
    trained = launch(
        "launch/train.py",
        f"--config={ROOT}/experiments/fashion_cnn_tiny.py",
        f"--workdir={workdir}",
        f"--config.data.data_dir={synthetic_data_dir}",
        "--config.train.num_steps=2",
        "--config.train.plot=False",
    )
    # A tool that fails at once still logs its compile cache line: in the short form too.
    tool = launch("launch/export.py", f"--workdir={tmp_path / 'none'}", f"--out={tmp_path}/x")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert tool.returncode == 1 and tool.stderr.splitlines()[-1].startswith("error: ")
    for result in (trained, tool):
        lines = result.stderr.splitlines()
        assert any(line.startswith("compile cache ") for line in lines), lines
        assert not [line for line in lines if line[:1] == "I" and line[1:5].isdigit()], lines
        assert "Unable to initialize backend" not in result.stderr
    assert any(line.startswith("data fashion_mnist: ") for line in trained.stderr.splitlines())
