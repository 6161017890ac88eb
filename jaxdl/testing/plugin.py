"""jaxdl's pytest plugin, found by pytest through the `pytest11` entry point once jaxdl
is installed. Fixtures:

    jaxdl_images, jaxdl_tokens, jaxdl_documents   config.data sections of small
        generated sets (testing/data.py), written once per session
    jaxdl_run_with_devices(code, devices=4)   runs Python `code` in a new process that
        sees `devices` simulated CPU devices; returns its stdout (fails the test with
        its stderr if it exits non-zero)
    jaxdl_train(experiment, steps=5, overrides=None, workdir=None)   trains an
        experiment file through launch/train.py; returns the rows of its metrics.jsonl

And the ini option `jaxdl_cpu_devices = N` (pytest.ini / pyproject's
[tool.pytest.ini_options]) gives the test processes N simulated CPU devices before JAX
starts, so that `check_model`'s mesh property compares N devices with one in process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import chex
import pytest

from jaxdl.testing import data

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def pytest_addoption(parser) -> None:
    parser.addini(
        "jaxdl_cpu_devices",
        "simulated CPU devices for JAX in the tests",
        type="string",
        default="0",
    )


def pytest_configure(config) -> None:
    devices = int(config.getini("jaxdl_cpu_devices") or 0)
    if devices > 0:  # read when JAX starts its CPU backend, later in the session
        chex.set_n_cpu_devices(devices)


def _with_devices(xla_flags: str, devices: int) -> str:
    kept = [flag for flag in xla_flags.split() if not flag.startswith(_DEVICE_FLAG)]
    return " ".join([*kept, f"{_DEVICE_FLAG}={devices}"])


@pytest.fixture(scope="session")
def jaxdl_images(tmp_path_factory) -> dict:
    return data.images(tmp_path_factory.mktemp("jaxdl_data"))


@pytest.fixture(scope="session")
def jaxdl_tokens(tmp_path_factory) -> dict:
    return data.tokens(tmp_path_factory.mktemp("jaxdl_data"))


@pytest.fixture(scope="session")
def jaxdl_documents(tmp_path_factory) -> dict:
    return data.documents(tmp_path_factory.mktemp("jaxdl_data"))


@pytest.fixture
def jaxdl_run_with_devices():
    def run(code: str, devices: int = 4, timeout: float = 600) -> str:
        env = {**os.environ, "XLA_FLAGS": _with_devices(os.environ.get("XLA_FLAGS", ""), devices)}
        env["JAX_PLATFORMS"] = "cpu"
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            pytest.fail(f"exit {done.returncode} on {devices} devices:\n{done.stderr[-4000:]}")
        return done.stdout

    return run


def _launcher() -> Path:
    import jaxdl

    path = Path(jaxdl.__file__).resolve().parents[1] / "launch" / "train.py"
    if not path.is_file():
        pytest.fail(f"jaxdl_train needs jaxdl's launch/train.py (not found at {path})")
    return path


@pytest.fixture
def jaxdl_train(tmp_path):
    def train(experiment, steps: int = 5, overrides: dict | None = None, workdir=None) -> list:
        workdir = Path(workdir or tmp_path / "run")
        values = {"train.num_steps": steps, **(overrides or {})}
        args = [f"--config.{key}={value}" for key, value in values.items()]
        command = [sys.executable, str(_launcher()), f"--config={experiment}"]
        done = subprocess.run(
            [*command, f"--workdir={workdir}", *args], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.fail(f"launch/train.py exited {done.returncode}:\n{done.stderr[-4000:]}")
        lines = (workdir / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    return train
