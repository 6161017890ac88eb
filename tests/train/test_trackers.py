"""Trackers (train.writers) read back by each tool's own client, offline: TensorBoard's
event reader, W&B's reader of its offline run files (`wandb leet inspect`), MLflow's
client on a SQLite store; a failing tracker warns once; best checkpoints and --step=best."""

import errno
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import experiments.fashion_cnn_tiny as tiny
from jaxdl import configs
from jaxdl.errors import ConfigError, UserError
from jaxdl.train import checkpoint, read_metrics, run_info, trackers
from tests.conftest import ROOT, run_script
from tests.sweeps.test_sweeps import sweep_command
from tests.train.test_reliability import launch_after_mount, needs_mounts
from tests.train.test_train_e2e import (
    TINY,
    assert_ok,
    keep_checkpoints_up_to,
    saved_steps,
    tiny_run,
)

ALL = "--config.train.writers=jsonl,tensorboard,wandb,mlflow"


@pytest.fixture
def offline(monkeypatch):
    """W&B offline (files under the workdir, no login), MLflow's store left to the run."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


# ---- the clients' own readers ------------------------------------------------------------
def tensorboard_events(workdir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(workdir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return events


def tensorboard_hparams(events) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {
        k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
        for k, v in start.hparams.items()
    }


def wandb_records(workdir: Path) -> list[list[dict]]:
    """Each offline W&B run file under the workdir (one per start of the run), as the
    records W&B's own reader gives (`wandb leet inspect --json`)."""
    files = sorted((workdir / "wandb").glob("offline-run-*/run-*.wandb"))
    wandb = Path(sys.executable).parent / "wandb"
    out = []
    for path in files:
        text = subprocess.run(
            [str(wandb), "leet", "inspect", "--json", str(path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        out.append([json.loads(line) for line in text.splitlines() if line.strip()])
    return out


def wandb_history(records: list[dict]) -> dict[int, dict]:
    return {
        r["history"]["step"]["num"]: r["history"]["item"] for r in records if r["type"] == "history"
    }


def mlflow_run(workdir: Path):
    from mlflow.tracking import MlflowClient

    ids = json.loads((workdir / trackers.IDS_FILE).read_text())["mlflow"]
    client = MlflowClient(ids["uri"])
    return client, client.get_run(ids["run_id"])


def jsonl_series(workdir: Path) -> dict[str, list[tuple[int, float]]]:
    series: dict = {}
    for row in read_metrics(workdir):
        for name, value in row.items():
            if "/" in name and not isinstance(value, str):
                series.setdefault(name, []).append((row["step"], value))
    return series


# ---- unit: the trackers on their own -------------------------------------------------------
def test_writers_name_known_backends_and_the_extra_a_missing_one_needs(monkeypatch):
    assert trackers.parse_writers("jsonl,tensorboard") == ["tensorboard"]
    assert trackers.parse_writers("jsonl") == []
    with pytest.raises(ConfigError, match=r"train.writers='comet' is not one of"):
        trackers.parse_writers("jsonl,comet")
    real = trackers.importlib.util.find_spec
    monkeypatch.setattr(
        trackers.importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name)
    )
    with pytest.raises(ConfigError, match=r"needs the wandb package: pip install -e '.\[wandb\]'"):
        trackers.parse_writers("jsonl,wandb")


class _FullDisk:
    calls = 0

    def __init__(self, identity, ids):
        self.ids = {}

    def scalars(self, step, values):
        _FullDisk.calls += 1
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failing_tracker_warns_once_and_the_others_go_on(tmp_path, monkeypatch, caplog, offline):
    monkeypatch.setitem(trackers._OPEN, "wandb", _FullDisk)
    config = configs.resolve(tiny.get_config())
    run = trackers.Trackers(["wandb", "tensorboard"], config, tmp_path, None)
    with caplog.at_level(logging.WARNING):
        for step in (1, 2, 3):
            run.scalars(step, {"train/loss": 1.0 / step})
        run.close()
    warnings = [r.getMessage() for r in caplog.records if "train.writers" in r.getMessage()]
    assert warnings == [
        "train.writers: wandb failed (no space left on device); it is off for the rest of "
        "this run (metrics.jsonl has every row)"
    ]
    assert _FullDisk.calls == 1
    assert [e.step for e in tensorboard_events(tmp_path).Scalars("train/loss")] == [1, 2, 3]


def test_wandb_without_a_login_warns_instead_of_asking(tmp_path, monkeypatch, caplog):
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path))
    config = configs.resolve(tiny.get_config())
    import wandb

    wandb.teardown()  # W&B keeps its settings from the environment per process: afresh
    try:
        with caplog.at_level(logging.WARNING):
            trackers.Trackers(["wandb"], config, tmp_path, None).close()
    finally:
        wandb.teardown()
    assert "wandb failed (not logged in to W&B: wandb login, or WANDB_MODE=offline)" in caplog.text


@pytest.mark.slow  # W&B's service process and MLflow's store: seconds
def test_every_tracker_reads_back_and_a_resume_continues_its_runs(tmp_path, offline):
    config = configs.resolve(tiny.get_config())
    picture = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    names = ["tensorboard", "wandb", "mlflow"]
    first = trackers.Trackers(names, config, tmp_path, None)
    first.scalars(5, {"train/loss": 2.0})
    first._live.pop("wandb").close()  # as if killed before W&B wrote its files again
    first.scalars(10, {"train/loss": 1.5, "eval/accuracy": 0.25})
    first.close()
    # Resumed after that kill, from a checkpoint before step 10: the other trackers have
    # step 10 and are not sent it again; W&B, whose files end at step 5, is.
    again = trackers.Trackers(names, config, tmp_path, logged_until=10)
    again.scalars(10, {"train/loss": 1.5, "eval/accuracy": 0.25})
    again.images(15, {"samples": picture})
    again.scalars(15, {"train/loss": 1.25})
    again.close()

    events = tensorboard_events(tmp_path)
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [
        (5, 2.0),
        (10, 1.5),
        (15, 1.25),
    ]
    assert [e.step for e in events.Images("samples")] == [15]
    hparams = tensorboard_hparams(events)
    assert hparams["optimizer.learning_rate"] == config.optimizer.learning_rate
    assert hparams["model.name"] == "cnn"

    runs = wandb_records(tmp_path)
    assert len(runs) == 2  # two starts of one W&B run
    ids = {r["run"]["run_id"] for records in runs for r in records if r["type"] == "run"}
    assert ids == {json.loads((tmp_path / trackers.IDS_FILE).read_text())["wandb"]["id"]}
    assert sorted(wandb_history(runs[0])) == [5] and sorted(wandb_history(runs[1])) == [10, 15]
    history = {**wandb_history(runs[0]), **wandb_history(runs[1])}
    assert [history[s]["train/loss"] for s in (5, 10, 15)] == [2.0, 1.5, 1.25]
    assert history[15]["samples._type"] == "image-file"
    config_record = next(r["run"]["config"]["update"] for r in runs[0] if r["type"] == "run")
    assert config_record["optimizer"]["learning_rate"] == config.optimizer.learning_rate

    client, run = mlflow_run(tmp_path)
    loss = client.get_metric_history(run.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in loss] == [(5, 2.0), (10, 1.5), (15, 1.25)]
    assert run.data.params["optimizer.learning_rate"] == str(config.optimizer.learning_rate)
    assert run.info.run_name == tmp_path.name and run.info.status == "FINISHED"
    images = [f.path for f in client.list_artifacts(run.info.run_id, "images")]
    assert images, "the picture reached MLflow"
    assert list((tmp_path / "mlartifacts").rglob("samples*.png"))  # beside the store


@pytest.mark.slow  # W&B's service process and MLflow's store: seconds
def test_trials_of_a_sweep_are_grouped_with_their_values(tmp_path, offline):
    from mlflow.tracking import MlflowClient

    sweep_dir, values = tmp_path / "sweep", {"a": {"seed": 1}, "b": {"seed": 2}}
    opened = {}
    for name, varied in values.items():  # both at once, as vmapped trials are
        config = configs.resolve(tiny.get_config())
        for key, value in trackers.trial_overrides(sweep_dir, varied).items():
            config.train[key.removeprefix("train.")] = value
        opened[name] = trackers.Trackers(["wandb", "mlflow"], config, sweep_dir / name, None)
    for name, run in opened.items():
        run.scalars(1, {"train/loss": values[name]["seed"]})
        run.close()

    client = MlflowClient(f"sqlite:///{sweep_dir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("jaxdl").experiment_id], "")
    parent = next(r for r in runs if r.info.run_name == "sweep")
    for name, varied in values.items():
        (records,) = wandb_records(sweep_dir / name)
        run = next(r["run"] for r in records if r["type"] == "run")
        assert (run["run_group"], run["display_name"]) == ("sweep", name)
        assert run["config"]["update"]["trial"] == varied
        assert wandb_history(records)[1]["train/loss"] == varied["seed"]
        child = next(r for r in runs if r.info.run_name == name)
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert json.loads(child.data.tags["jaxdl.trial"]) == varied


# ---- end to end: a run, killed and resumed, read back by every client ----------------------
@pytest.mark.slow
def test_a_killed_and_resumed_run_reads_back_the_same_in_every_tracker(
    launch, synthetic_data_dir, tmp_path, offline
):
    workdir = tmp_path / "run"
    args = ("--config.train.num_steps=20", "--config.train.checkpoint_every=10", ALL)
    assert_ok(tiny_run(launch, workdir, synthetic_data_dir, *args))
    keep_checkpoints_up_to(workdir, 10)  # as if killed after step 10's checkpoint
    resumed = tiny_run(launch, workdir, synthetic_data_dir, *args)
    assert_ok(resumed)
    assert "resumed from step 10" in resumed.stderr and "Traceback" not in resumed.stderr
    series = jsonl_series(workdir)
    assert {"train/loss", "eval/accuracy", "eval/loss"} <= set(series)

    events = tensorboard_events(workdir)
    for name, points in series.items():
        read = [(e.step, e.value) for e in events.Scalars(name)]
        assert read == [(s, pytest.approx(v, rel=1e-6)) for s, v in points], name
    assert tensorboard_hparams(events)["train.num_steps"] == 20

    client, run = mlflow_run(workdir)
    for name, points in series.items():
        history = client.get_metric_history(run.info.run_id, name)
        assert [(m.step, m.value) for m in history] == points, name  # none twice

    runs = wandb_records(workdir)
    history = {}
    for records in runs:
        for step, item in wandb_history(records).items():
            assert step not in history, f"step {step} written twice"
            history[step] = item
    for name, points in series.items():
        assert [(s, history[s][name]) for s, _ in points] == points, name


# ---- best checkpoints ----------------------------------------------------------------------
def test_best_mode_is_read_from_the_metric_name_or_given():
    cfg = configs.resolve(tiny.get_config()).train
    cfg.update(keep_best=2, best_metric="eval/accuracy")
    assert checkpoint.BestOf.of(cfg) == checkpoint.BestOf("eval/accuracy", "max", 2)
    cfg.best_metric = "eval/bits_per_char"
    assert checkpoint.BestOf.of(cfg).mode == "min"
    cfg.best_metric = "eval/widgets"
    with pytest.raises(ConfigError, match=r"set train.best_mode=max or min"):
        checkpoint.BestOf.of(cfg)
    cfg.best_mode = "min"
    assert checkpoint.BestOf.of(cfg).mode == "min"
    cfg.best_metric = ""
    with pytest.raises(ConfigError, match=r"needs train.best_metric=eval/<name>"):
        checkpoint.BestOf.of(cfg)
    cfg.keep_best = 0
    assert checkpoint.BestOf.of(cfg) is None


def test_step_best_reads_best_json_and_says_when_there_is_none(tmp_path):
    assert run_info.checkpoint_step(tmp_path, None) is None
    assert run_info.checkpoint_step(tmp_path, "30") == 30
    with pytest.raises(UserError, match="--step=last must be a checkpoint step or 'best'"):
        run_info.checkpoint_step(tmp_path, "last")
    with pytest.raises(UserError, match=r"has no best.json"):
        run_info.checkpoint_step(tmp_path, "best")
    (tmp_path / checkpoint.BEST_FILE).write_text(json.dumps({"step": 20, "value": 0.5}))
    assert run_info.checkpoint_step(tmp_path, "best") == 20


@pytest.mark.slow
def test_the_best_checkpoints_are_kept_beside_the_newest_and_tools_take_step_best(
    launch, synthetic_data_dir, tmp_path
):
    workdir = tmp_path / "run"
    # best_mode=min on accuracy: the "best" is the least accurate, an early checkpoint
    # that only the best policy keeps (the newest 2 are kept for resume).
    args = (
        "--config.train.num_steps=40",
        "--config.train.keep_checkpoints=2",
        "--config.train.keep_best=1",
        "--config.train.best_metric=eval/accuracy",
        "--config.train.best_mode=min",
    )
    assert_ok(tiny_run(launch, workdir, synthetic_data_dir, *args))
    evals = {r["step"]: r["eval/accuracy"] for r in read_metrics(workdir) if "eval/accuracy" in r}
    assert sorted(evals) == [10, 20, 30, 40]
    worst = min(evals, key=lambda s: (evals[s], -s))
    best = json.loads((workdir / checkpoint.BEST_FILE).read_text())
    assert (best["step"], best["value"], best["mode"]) == (worst, evals[worst], "min")
    assert saved_steps(workdir) == sorted({worst, 30, 40})
    out = tmp_path / "export"
    result = run_script("launch/export.py", f"--workdir={workdir}", f"--out={out}", "--step=best")
    assert_ok(result)
    assert json.loads((out / "export.json").read_text())["run"]["step"] == worst


@pytest.mark.slow
@needs_mounts
def test_a_disk_filled_mid_run_ends_with_one_line_whatever_the_trackers(
    synthetic_data_dir, tmp_path, offline
):
    disk = tmp_path / "disk"
    disk.mkdir()
    # The disk fills up once the run has written 10 rows (before, tensorboardX's writer
    # thread died with a traceback and the run hung on its full queue).
    fill = (
        f"(while [ $(cat {disk}/run/metrics.jsonl 2>/dev/null | wc -l) -lt 10 ]; do sleep 0.1;"
        f" done; dd if=/dev/zero of={disk}/fill bs=64k 2>/dev/null)"
    )
    mount = f"mount -t tmpfs -o size=8m tmpfs {disk} && mkdir {disk}/run && {{ {fill} & }}"
    script = (
        f"{TINY} --workdir={disk}/run --config.data.data_dir={synthetic_data_dir} "
        "--config.train.num_steps=100000 --config.train.log_every=1 --config.train.eval_every=0 "
        f"--config.train.plot=False {ALL}"
    ).split()
    result = launch_after_mount(mount, *script)
    assert result.returncode == 1, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    last, ending = lines[-1], result.stderr[-3000:]
    assert last.startswith("error: could not") and "no space left on device" in last, ending
    assert sum(line.startswith("error:") for line in lines) == 1, ending
    assert "Traceback" not in result.stderr and "Exception in thread" not in result.stderr, ending


@pytest.mark.slow
def test_a_sweep_two_at_a_time_makes_one_mlflow_parent_run(synthetic_data_dir, tmp_path, offline):
    from mlflow.tracking import MlflowClient

    sweep_dir = tmp_path / "sweep"
    flags = (
        "--sweep=config.optimizer.learning_rate=[0.01,0.03]",
        "--parallel=2",  # both start together: one store set-up, one parent run
        "--config.train.writers=jsonl,mlflow",  # W&B: test_trials_of_a_sweep_are_grouped...
    )
    command = sweep_command(sweep_dir, synthetic_data_dir, *flags)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = json.loads((sweep_dir / "sweep.json").read_text())["trials"]
    values = {t["name"]: t["overrides"] for t in trials}
    assert len(values) == 2

    client = MlflowClient(f"sqlite:///{sweep_dir / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("jaxdl").experiment_id], "", max_results=10
    )
    parent = next(r for r in runs if r.info.run_name == sweep_dir.name)
    children = {r.info.run_name: r for r in runs if r is not parent}
    assert set(children) == set(values)
    for name, run in children.items():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert json.loads(run.data.tags["jaxdl.trial"]) == values[name]
        learning_rate = values[name]["optimizer.learning_rate"]
        assert run.data.params["optimizer.learning_rate"] == str(learning_rate)
        assert client.get_metric_history(run.info.run_id, "eval/loss")
