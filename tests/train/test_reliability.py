"""Nothing lost: damaged checkpoints fall back, a failed save stops the run at once, one
trainer per workdir, a resumed run's rows equal a straight run's, bad input is one line."""

import asyncio
import gc
import json
import logging
import os
import shutil
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest

import experiments.fashion_cnn_tiny as tiny
from jaxdl import configs
from jaxdl.errors import UserError
from jaxdl.train import read_metrics
from jaxdl.train.rundir import RunDir
from tests.conftest import ROOT, init_state, launch_xla_flags
from tests.tasks.test_classify import tiny_task
from tests.train.test_train_e2e import (
    TINY,
    assert_ok,
    keep_checkpoints_up_to,
    saved_steps,
    wait_for_rows,
)

DEVICE = jax.sharding.SingleDeviceSharding(jax.devices()[0])


def two_checkpoints(workdir, dense=32):
    """A RunDir with checkpoints at steps 1 and 2 of the tiny classifier: (states, info)."""
    config = configs.resolve(tiny.get_config())
    config.model.dense = dense
    task, batch = tiny_task(model=dict(dense=dense))
    rundir = RunDir(workdir, config, keep_checkpoints=3)
    state = init_state(task, batch)
    rundir.start(0, {"class_names": list("0123456789")}, batch, 2)
    states, train_step = [], jax.jit(task.train_step)
    for step in (1, 2):
        state, _ = train_step(state, batch)
        rundir.save(step, state, {"next_batch": step, "elapsed_s": 0.0})
        states.append(state)
    rundir.close()
    return states


def restore(workdir):
    task, batch = tiny_task()
    abstract = jax.eval_shape(task.init, jax.random.PRNGKey(0), batch)
    rundir = RunDir(workdir, configs.resolve(tiny.get_config()), keep_checkpoints=3)
    try:
        return rundir.restore(abstract, DEVICE)
    finally:
        rundir.close()


def largest_data_file(step_dir):
    return max((step_dir / "state").rglob("d/*"), key=lambda p: p.stat().st_size)


DAMAGE = {
    "state/manifest.ocdbt": lambda d: d / "state" / "manifest.ocdbt",
    "state/_METADATA": lambda d: d / "state" / "_METADATA",
    "a data file": largest_data_file,
    "position/metadata": lambda d: d / "position" / "metadata",
}


@pytest.mark.parametrize("how", ["delete", "truncate"])
@pytest.mark.parametrize("which", list(DAMAGE))
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, caplog, which, how):
    states = two_checkpoints(tmp_path / "run")
    path = DAMAGE[which](tmp_path / "run" / "checkpoints" / "2")
    if how == "delete":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        state, position = restore(tmp_path / "run")
    assert position["next_batch"] == 1
    chex.assert_trees_all_equal(state, states[0])
    assert "checkpoint 2 in" in caplog.text and "the one before" in caplog.text


def abandoned_failed_read(path):
    """What orbax leaves when a restore fails: a read that failed after the restore gave
    up on it, whose error asyncio logs with a traceback when the task is collected."""

    async def read():
        raise ValueError(f'NOT_FOUND: Metadata in OCDBT database at local file "{path}/"')

    loop = asyncio.new_event_loop()
    task = loop.create_task(read())
    loop.run_until_complete(asyncio.wait([task]))  # waits without retrieving the error
    del task
    gc.collect()
    loop.close()


def test_late_errors_from_a_damaged_checkpoints_reads_are_not_logged(tmp_path, caplog):
    two_checkpoints(tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "2" / "state" / "manifest.ocdbt").unlink()
    restore(tmp_path / "run")
    checkpoints = tmp_path.absolute() / "run" / "checkpoints"
    with caplog.at_level(logging.ERROR):
        abandoned_failed_read(checkpoints / "2" / "state")
        assert "never retrieved" not in caplog.text
        abandoned_failed_read(checkpoints / "1" / "state")  # not damaged: still reported
        assert "never retrieved" in caplog.text


def test_when_every_checkpoint_is_damaged_the_run_stops_with_one_line(tmp_path):
    two_checkpoints(tmp_path / "run")
    for step in (1, 2):
        (tmp_path / "run" / "checkpoints" / str(step) / "state" / "manifest.ocdbt").unlink()
    with pytest.raises(UserError, match=r"no checkpoint in .*checkpoints can be restored"):
        restore(tmp_path / "run")


def test_resuming_with_other_state_shapes_names_the_config_keys(tmp_path):
    two_checkpoints(tmp_path / "run", dense=16)  # tiny's dense is 32
    with pytest.raises(UserError) as error:
        restore(tmp_path / "run")
    message = str(error.value)
    assert "\n" not in message and "model.dense 16 -> 32" in message
    assert "another --workdir" in message


@pytest.mark.slow
def test_a_second_trainer_on_a_workdir_exits_at_once_naming_the_first(
    launch, synthetic_data_dir, tmp_path
):
    workdir = tmp_path / "run"
    args = (TINY, f"--workdir={workdir}", f"--config.data.data_dir={synthetic_data_dir}")
    first = launch(*args, "--config.train.num_steps=1000000", wait=False)
    wait_for_rows(workdir)
    try:
        started = time.time()
        second = launch(*args, "--config.train.num_steps=5")
        assert second.returncode == 1 and time.time() - started < 60
        (line,) = [x for x in second.stderr.splitlines() if x.startswith("error:")]
        assert f"is in use by another trainer (pid {first.pid})" in line
    finally:
        first.terminate()
        first.communicate(timeout=60)
    assert first.returncode == 0  # SIGTERM: a clean stop with a checkpoint


@pytest.mark.slow
def test_repeated_sigterm_still_ends_with_a_complete_checkpoint(
    launch, synthetic_data_dir, tmp_path
):
    """What the sweep runner used to do: SIGTERM every 0.2 s until the trainer is gone."""
    workdir = tmp_path / "run"
    process = launch(
        TINY,
        f"--workdir={workdir}",
        f"--config.data.data_dir={synthetic_data_dir}",
        "--config.train.num_steps=1000000",
        "--config.train.checkpoint_every=0",
        "--config.train.log_every=1",
        wait=False,
    )
    wait_for_rows(workdir)
    deadline = time.time() + 120
    while process.poll() is None and time.time() < deadline:
        process.terminate()
        time.sleep(0.2)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-2000:]
    (step,) = saved_steps(workdir)
    assert not list((workdir / "checkpoints").glob("*tmp*"))
    assert read_metrics(workdir)[-1]["step"] == step


def mount_namespaces_work() -> bool:
    try:
        probe = ["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"]
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


needs_mounts = pytest.mark.skipif(
    not mount_namespaces_work(), reason="no private mount namespaces (unshare -rm) here"
)


def launch_on_tmpfs(folder, size: str, *args: str, options: str = ""):
    """launch/train.py in a private mount namespace where `folder` is a tmpfs of `size`."""
    return launch_after_mount(f"mount -t tmpfs -o size={size}{options} tmpfs {folder}", *args)


def launch_after_mount(mount: str, *args: str):
    """launch/train.py in a private mount namespace, after the shell command `mount`."""
    mount = f'{mount} && exec "$@"'
    command = [sys.executable, str(ROOT / "launch" / "train.py"), *args]
    env = {**os.environ, "XLA_FLAGS": launch_xla_flags(devices=1)}  # as run_launcher's
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", mount, "sh", *command],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**env, "JAX_PLATFORMS": "cpu"},
    )


@pytest.mark.slow
@needs_mounts
def test_a_full_disk_stops_the_run_at_once_and_keeps_the_previous_checkpoint(
    synthetic_data_dir, tmp_path
):
    disk = tmp_path / "disk"
    disk.mkdir()
    # 1 MiB holds the first checkpoints of the tiny model, not the whole run's.
    script = (
        f"{TINY} --workdir={disk}/run --config.data.data_dir={synthetic_data_dir} "
        "--config.train.num_steps=400 --config.train.checkpoint_every=1 "
        "--config.train.keep_checkpoints=100 --config.train.plot=False"
    ).split()
    result = launch_on_tmpfs(disk, "1m", *script)
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "could not save checkpoint" in errors[0] and "no space left on device" in errors[0]


@pytest.mark.slow
@needs_mounts
def test_a_read_only_workdir_is_one_line(synthetic_data_dir, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    result = launch_on_tmpfs(
        disk,
        "1m",
        TINY,
        f"--workdir={disk}/run",
        f"--config.data.data_dir={synthetic_data_dir}",
        options=",ro",
    )
    assert result.returncode == 1
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "cannot write in" in line and "read-only file system" in line.lower()


@pytest.mark.slow
def test_resume_off_the_log_cadence_writes_the_straight_runs_rows(
    launch, synthetic_data_dir, tmp_path
):
    args = (
        "--config.train.num_steps=12",
        "--config.train.log_every=4",
        "--config.train.eval_every=6",
        "--config.train.checkpoint_every=5",
    )
    run = lambda workdir: launch(
        TINY, f"--workdir={workdir}", f"--config.data.data_dir={synthetic_data_dir}", *args
    )
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert_ok(run(straight))
    shutil.copytree(straight, resumed)
    keep_checkpoints_up_to(resumed, 5)  # killed after step 5: mid-window (4, 8]
    with (resumed / "metrics.jsonl").open("a") as f:
        f.write('{"step": 13, "elapsed_s": 1.0, "train/lo')  # a row cut by the kill
    result = run(resumed)
    assert_ok(result)
    assert "metrics.jsonl: dropped a damaged last line" in result.stderr
    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]
    assert strip(read_metrics(resumed)) == strip(read_metrics(straight))


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage,message",
    [
        ("train-images-idx3-ubyte.gz", "is damaged"),
        ("t10k-labels-idx1-ubyte.gz", "is damaged"),
    ],
)
def test_a_truncated_data_file_is_one_line(launch, synthetic_data_dir, tmp_path, damage, message):
    data = tmp_path / "data"
    shutil.copytree(synthetic_data_dir, data)
    path = data / "fashion-mnist" / damage
    path.write_bytes(path.read_bytes()[:100])
    result = launch(TINY, f"--workdir={tmp_path / 'run'}", f"--config.data.data_dir={data}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert message in line and damage in line


@pytest.mark.slow
def test_bad_workdirs_and_values_are_one_line(launch, synthetic_data_dir, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    data = f"--config.data.data_dir={synthetic_data_dir}"
    for args, message in [
        ((f"--workdir={a_file}",), "is a file, not a directory"),
        (
            (f"--workdir={tmp_path / 'run'}", "--config.data.eval_batch_size=0"),
            "data.eval_batch_size=0 must be positive",
        ),
        (
            (f"--workdir={tmp_path / 'run'}", "--config.modle.dense=3"),
            "unknown config key 'modle' in --config.modle.dense=3",
        ),
    ]:
        result = launch(TINY, data, *args)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
        assert message in line and "\\" not in line, line


@pytest.mark.slow
def test_resume_with_another_model_shape_is_one_line(launch, synthetic_data_dir, tmp_path):
    args = (TINY, f"--workdir={tmp_path / 'run'}", f"--config.data.data_dir={synthetic_data_dir}")
    assert_ok(launch(*args, "--config.train.num_steps=2"))
    result = launch(*args, "--config.model.dense=64")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "model.dense 32 -> 64" in line and "another --workdir" in line
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["dense"] == 32  # the run's record is left as it was


@pytest.mark.slow
def test_one_and_four_devices_end_with_the_same_parameters(launch, synthetic_data_dir, tmp_path):
    from tests.train.test_train_e2e import saved_state

    states = []
    for devices in (1, 4):
        workdir = tmp_path / f"devices{devices}"
        result = launch(
            TINY,
            f"--workdir={workdir}",
            f"--config.data.data_dir={synthetic_data_dir}",
            devices=devices,
        )
        assert_ok(result)
        states.append(saved_state(workdir, 20))
    chex.assert_trees_all_close(states[1]["params"], states[0]["params"], atol=1e-5)
    chex.assert_trees_all_close(states[1]["model_state"], states[0]["model_state"], atol=1e-5)
    assert np.isfinite(jax.tree.leaves(states[0]["params"])[0]).all()


@pytest.mark.slow
def test_the_launcher_falls_back_past_a_damaged_checkpoint_and_trains_on(
    launch, synthetic_data_dir, tmp_path
):
    workdir = tmp_path / "run"
    args = (TINY, f"--workdir={workdir}", f"--config.data.data_dir={synthetic_data_dir}")
    assert_ok(launch(*args))  # checkpoints 10 and 20
    (workdir / "checkpoints" / "20" / "state" / "manifest.ocdbt").unlink()
    result = launch(*args, "--config.train.num_steps=25", "--allow_config_change")
    assert_ok(result)
    assert "Traceback" not in result.stderr
    assert "checkpoint 20 in" in result.stderr and "trying the one before" in result.stderr
    assert "resumed from step 10" in result.stderr
    assert saved_steps(workdir) == [10, 20, 25]  # 20 again, trained anew
    assert (workdir / "damaged_checkpoints" / "20").is_dir()  # set aside, not deleted


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "random bytes", "not a tar"])
def test_a_damaged_review_archive_is_one_line(launch, polarity_data_dir, tmp_path, damage):
    import gzip

    data = tmp_path / "data"
    shutil.copytree(polarity_data_dir, data)
    archive = data / "review_polarity" / "review_polarity.tar.gz"
    raw = archive.read_bytes()
    archive.write_bytes(
        {
            "truncated": raw[: len(raw) // 2],
            "random bytes": np.random.default_rng(0).bytes(4000),
            "not a tar": gzip.compress(b"just some text\n" * 100),
        }[damage]
    )
    result = launch(
        f"--config={ROOT}/experiments/polarity_han_tiny.py",
        f"--workdir={tmp_path / 'run'}",
        f"--config.data.data_dir={data}",
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "review_polarity.tar.gz is damaged" in line


@pytest.mark.slow
def test_a_run_saved_before_the_bias_was_dropped_keeps_loading(
    launch, synthetic_data_dir, tmp_path
):
    from jaxdl.train.run_info import load_run

    workdir = tmp_path / "run"
    args = (TINY, f"--workdir={workdir}", f"--config.data.data_dir={synthetic_data_dir}")
    assert_ok(launch(*args, "--config.model.bias_before_norm=True"))
    config = json.loads((workdir / "config.json").read_text())
    del config["model"]["bias_before_norm"]  # as written before the key existed
    (workdir / "config.json").write_text(json.dumps(config))
    _, _, _, state = load_run(workdir)
    assert set(state.params["Conv_0"]) == {"kernel", "bias"}
    result = launch(*args, "--config.train.num_steps=22")
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "model.bias_before_norm True -> False, train.num_steps 20 -> 22" in line
    # The refusal's advice, followed as given (overrides may follow): the run's config,
    # resolved as it was trained, resumes it. Before, launch/train.py read no config.json.
    command = line.split("resume the run as it was trained: ")[1].split()
    assert command == ["launch/train.py", f"--config={workdir}/config.json", f"--workdir={workdir}"]
    resumed = launch(*command[1:], "--config.train.num_steps=22", "--allow_config_change")
    assert_ok(resumed)
    assert "resumed from step 20" in resumed.stderr
    assert json.loads((workdir / "config.json").read_text())["model"]["bias_before_norm"]
    again = launch(f"--config={workdir}", f"--workdir={workdir}", "--config.train.num_steps=24")
    (line,) = [x for x in again.stderr.splitlines() if x.startswith("error:")]
    assert again.returncode == 1 and "train.num_steps 22 -> 24;" in line  # steps: refused
    again = launch(
        f"--config={workdir}",
        f"--workdir={workdir}",
        "--config.train.num_steps=24",
        "--config.train.log_every=2",  # reporting only: passes, recorded
        "--allow_config_change",
    )
    assert_ok(again)
    assert "resumed from step 22" in again.stderr
    history = (workdir / "config_history.jsonl").read_text().splitlines()
    assert [json.loads(line)["changed"] for line in history] == [
        {"train.num_steps": [20, 22]},
        {"train.log_every": [5, 2], "train.num_steps": [22, 24]},
    ]
