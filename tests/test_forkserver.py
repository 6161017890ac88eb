"""The suite's fork server (tests/forkserver.py) stands in for `python SCRIPT ARGS...`:
the child gets its argv, environment, working directory and device count, and its exit
status comes back as Popen's; where it cannot stand in, a fresh python runs."""

import os
import signal
import textwrap

import pytest

from tests.conftest import ROOT, run_launcher, run_script

PROBE = """
import os, signal, sys
import jax
print(sys.argv[1:], os.getcwd() == sys.argv[1], os.environ.get("PROBE"))
print(jax.device_count(), os.getppid())
mode = os.environ.get("PROBE_END")
if mode == "exit":
    sys.exit(3)
if mode == "raise":
    raise ValueError("from the probe")
if mode == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def server(fork_server):
    if fork_server is None:
        pytest.skip("JAXDL_TEST_FORK_SERVER=0: no fork server")
    return fork_server


@pytest.fixture
def probe(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text(textwrap.dedent(PROBE))
    return path


def test_a_child_runs_as_its_own_python_with_its_own_devices(probe, server):
    result = run_script(
        str(probe),
        str(ROOT),
        "--flag=1",
        env={"PROBE": "seen", "XLA_FLAGS": "--xla_force_host_platform_device_count=3"},
    )
    assert result.returncode == 0, result.stderr
    argv_line, devices_line = result.stdout.splitlines()
    assert argv_line == f"[{str(ROOT)!r}, '--flag=1'] True seen"
    devices, parent = devices_line.split()
    assert devices == "3"
    assert int(parent) == server.process.pid  # forked by the server, not a new python


@pytest.mark.parametrize(
    ("end", "returncode"), [("exit", 3), ("raise", 1), ("kill", -signal.SIGKILL)]
)
def test_its_exit_status_is_what_popen_reports(probe, end, returncode):
    result = run_script(str(probe), str(ROOT), env={"PROBE_END": end})
    assert result.returncode == returncode
    if end == "raise":
        assert result.stderr.rstrip().endswith("ValueError: from the probe")


def test_a_start_up_variable_gets_a_fresh_python(probe, server):
    result = run_script(str(probe), str(ROOT), env={"PYTHONHASHSEED": "7"})
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) == os.getpid()  # this worker started it


def test_a_running_launch_takes_signals_by_its_pid(synthetic_data_dir, tmp_path):
    process = run_launcher(
        f"--config={ROOT}/experiments/fashion_cnn_tiny.py",
        f"--workdir={tmp_path / 'run'}",
        f"--config.data.data_dir={synthetic_data_dir}",
        "--config.train.num_steps=1000000",
        wait=False,
    )
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
