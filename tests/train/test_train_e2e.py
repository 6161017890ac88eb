"""End-to-end runs of launch/train.py, each in its own process (its own JAX devices)."""

import json
import math
import signal
import time

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxdl.train import read_metrics
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
TINY = f"--config={ROOT}/experiments/fashion_cnn_tiny.py"


def tiny_run(launch, workdir, data_dir, *overrides, **kwargs):
    return launch(
        TINY, f"--workdir={workdir}", f"--config.data.data_dir={data_dir}", *overrides, **kwargs
    )


def assert_ok(result):
    assert result.returncode == 0, result.stderr[-3000:]


def saved_steps(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def saved_state(workdir, step):
    """A checkpoint's state as numpy arrays (saved on any number of devices)."""
    path = (workdir / "checkpoints" / str(step) / "state").absolute()
    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(path).item_metadata.tree
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))


def wait_for_rows(workdir, timeout: float = 120) -> None:
    """Until a run (started in the background) has written its first metrics row."""
    deadline = time.time() + timeout
    while not read_metrics(workdir) and time.time() < deadline:
        time.sleep(0.2)


def keep_checkpoints_up_to(workdir, last):
    """Deletes checkpoints after step `last`: as if the run was killed just after it."""
    for step in saved_steps(workdir):
        if step > last:
            for path in sorted((workdir / "checkpoints" / str(step)).rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()
            (workdir / "checkpoints" / str(step)).rmdir()


def test_resume_in_a_new_process_is_bit_equal(launch, synthetic_data_dir, tmp_path):
    args = (
        "--config.train.num_steps=12",
        "--config.train.log_every=1",
        "--config.train.eval_every=4",
        "--config.train.checkpoint_every=5",
    )
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert_ok(tiny_run(launch, straight, synthetic_data_dir, *args))
    assert_ok(tiny_run(launch, resumed, synthetic_data_dir, *args))
    keep_checkpoints_up_to(resumed, 5)
    assert saved_steps(resumed) == [5]
    # As if its first 5 steps had run on a GPU ("auto" there: XLA's convolution).
    run_json = resumed / "run.json"
    cpu = json.loads(run_json.read_text())["backend"]
    assert cpu == {"name": "cpu", "device_kind": "cpu", "auto": {"model.conv_impl": "matmul"}}
    gpu = {"name": "gpu", "device_kind": "H100", "auto": {"model.conv_impl": "xla"}}
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "backend": gpu}))
    result = tiny_run(launch, resumed, synthetic_data_dir, *args)
    assert_ok(result)
    assert "resumed from step 5" in result.stderr
    assert "backend cpu (cpu): model.conv_impl=auto -> matmul" in result.stderr
    assert "trained on gpu with {'model.conv_impl': 'xla'} before" in result.stderr
    record = json.loads(run_json.read_text())
    assert record["backend"] == cpu and record["earlier_backends"] == [gpu]

    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]
    rows = strip(read_metrics(straight))
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert rows == strip(read_metrics(resumed))  # every loss, metric and eval, bit-equal
    chex.assert_trees_all_equal(saved_state(straight, 12), saved_state(resumed, 12))


def test_four_devices_follow_the_one_device_trajectory(launch, synthetic_data_dir, tmp_path):
    # Momentum SGD: Adam's g / sqrt(v) turns rounding-level differences of tiny gradients
    # (a different reduction order over 4 devices) into lr-sized ones.
    args = (
        "--config.train.num_steps=10",
        "--config.train.log_every=1",
        "--config.optimizer.name=momentum",
        "--config.optimizer.learning_rate=0.05",
    )
    runs = {}
    for devices in (1, 4):
        workdir = tmp_path / f"devices{devices}"
        result = tiny_run(launch, workdir, synthetic_data_dir, *args, devices=devices)
        assert_ok(result)
        assert f"{devices} devices" in result.stderr
        runs[devices] = read_metrics(workdir)
    for name in ("train/loss", "train/grad_norm", "eval/loss"):
        one = [r[name] for r in runs[1] if name in r]
        four = [r[name] for r in runs[4] if name in r]
        assert len(one) == len(four) > 0
        np.testing.assert_allclose(four, one, rtol=1e-5, atol=1e-5, err_msg=name)


def test_sigterm_saves_a_resumable_checkpoint(launch, synthetic_data_dir, tmp_path):
    workdir = tmp_path / "run"
    process = tiny_run(
        launch,
        workdir,
        synthetic_data_dir,
        "--config.train.num_steps=1000000",
        "--config.train.log_every=1",
        "--config.train.checkpoint_every=0",
        wait=False,
    )
    wait_for_rows(workdir)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-3000:]
    assert "SIGTERM" in stderr
    (step,) = saved_steps(workdir)
    assert step >= 1
    stopped = (workdir / "stopped.txt").read_text()  # what a sweep runner reads: not done
    assert stopped == f"stopped by SIGTERM at step {step}; resumable\n"
    result = tiny_run(
        launch,
        workdir,
        synthetic_data_dir,
        f"--config.train.num_steps={step + 3}",
        "--allow_config_change",
    )
    assert_ok(result)
    assert f"resumed from step {step}" in result.stderr
    assert read_metrics(workdir)[-1]["step"] == step + 3
    assert not (workdir / "stopped.txt").exists()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    launch, synthetic_data_dir, tmp_path
):
    workdir = tmp_path / "run"
    result = tiny_run(
        launch,
        workdir,
        synthetic_data_dir,
        "--config.optimizer.name=sgd",
        "--config.optimizer.learning_rate=1e30",
        "--config.optimizer.clip=none",
        "--config.optimizer.schedule=constant",
        "--config.model.batch_norm=False",
        "--config.train.checkpoint_every=1",
        "--config.train.num_steps=50",
    )
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: non-finite train/")
    bad_step = int(error.split(" at step ")[1].split(";")[0])
    good_step = int(error.split("last good checkpoint: step ")[1].split(" ")[0])
    assert saved_steps(workdir)[-1] == good_step == bad_step - 1
    state = saved_state(workdir, good_step)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))


def test_time_budget_ends_with_a_final_eval_and_checkpoint(launch, synthetic_data_dir, tmp_path):
    workdir = tmp_path / "run"
    result = tiny_run(
        launch,
        workdir,
        synthetic_data_dir,
        "--config.train.num_steps=1000000",
        "--config.train.max_seconds=4",
        "--config.train.eval_every=0",
        "--config.train.log_every=1000",
    )
    assert_ok(result)
    assert "time budget" in result.stderr
    last = read_metrics(workdir)[-1]
    assert "eval/accuracy" in last and last["elapsed_s"] >= 4
    assert saved_steps(workdir)[-1] == last["step"]
    config = json.loads((workdir / "config.json").read_text())
    assert config["train"]["max_seconds"] == 4


@pytest.mark.parametrize(
    "override,message",
    [
        ("--config.optimizer.no_such_key=1", "unknown config key 'no_such_key'"),
        ("--config.optimizer.learning_rate=fast", "could not convert string to float"),
        ("--config.optimizer.clip_norm=0", "optimizer.clip_norm=0.0 must be > 0"),
        ("--config.optimizer.name=lion", "optimizer.name='lion' is not one of"),
        ("--config.data.batch_size=7", "data.batch_size=7 must divide over 2 devices"),
        ("--config=experiments/nope.py", "cannot load --config"),
        ("--config=experiments/shakespeare_lstm.py:bogus", "unknown budget 'bogus'"),
        ("--config.task.name=lm", "task 'lm' needs a data set with vocab"),
        ("--config.model.dense=-3", "model.dense=-3 must be >= 0"),  # was JAX's TypeError
        ("--config.data.name=tiny_shakespeare", "tiny_shakespeare"),  # was an AttributeError
    ],
)
def test_bad_flags_exit_with_one_line(launch, synthetic_data_dir, tmp_path, override, message):
    result = tiny_run(launch, tmp_path / "run", synthetic_data_dir, override, devices=2)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_missing_workdir_is_one_line_naming_it(launch):
    result = launch(TINY)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line == "error: --workdir is required (the run's directory)"


def test_missing_data_dir_exits_with_one_line(launch, tmp_path):
    result = launch(
        TINY,
        f"--workdir={tmp_path / 'run'}",
        f"--config.data.data_dir={tmp_path / 'none'}",
        "--config.data.source=local",
    )
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "'fashion_mnist'" in line and str(tmp_path / "none") in line


def test_smoke_run_on_real_fashion_mnist(launch, tmp_path):
    workdir = tmp_path / "run"
    result = launch(
        TINY,
        f"--workdir={workdir}",
        "--config.data.source=local",
        "--config.train.num_steps=40",
        "--config.train.eval_every=40",
    )
    assert_ok(result)
    assert "60000 train, 10000 eval (local copy" in result.stderr
    last = read_metrics(workdir)[-1]
    assert last["step"] == 40 and math.isfinite(last["eval/loss"])
    assert last["eval/accuracy"] > 0.3  # chance is 0.1
    assert (workdir / "tensorboard").is_dir() and (workdir / "config.json").is_file()
