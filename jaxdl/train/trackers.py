"""Experiment trackers: where a run's scalars, config, pictures and identity go besides
metrics.jsonl, which is always written and stays the run's truth (resume, plots, tools
and sweeps read it; writers.py).

`config.train.writers` names them, comma-separated: `jsonl` (always on), `tensorboard`
(workdir/tensorboard/, read by TensorBoard), `wandb` (Weights & Biases; `WANDB_MODE=
offline` keeps it in workdir/wandb/), `mlflow` (MLflow; `train.tracking_uri`, else
$MLFLOW_TRACKING_URI, else a SQLite store beside the run: workdir/mlflow.db, or the
sweep's sweep_dir/mlflow.db for its trials). Each gets the scalars of every row, the
resolved config as hyperparameters, the pictures the task draws, and the run's identity:
workdir/trackers.json keeps each tracker's run id, so that a resumed run continues the
same W&B run and MLflow run; rows a killed run had already sent (up to `logged_until`,
the last step of its metrics.jsonl before a resume dropped the rows after its
checkpoint) are not sent again, so no step is written twice (W&B, which writes its files
a moment later, gets the rows after the last step its own files hold: none missing).

A trial of a sweep or search (`train.group`: the sweep's directory, `train.trial`: its
varied values as JSON; set by jaxdl/sweeps through `trial_overrides`) is grouped: W&B's
group, an MLflow child run of one parent run per sweep, TensorBoard hyperparameters.

A tracker fails soft: the first error (disk full, server gone) is one warning, and the
tracker is off for the rest of the run; training goes on with metrics.jsonl. Nothing
writes in a background thread of ours, so nothing fails at exit.
"""

import contextlib
import dataclasses
import fcntl
import importlib.util
import json
import logging as std_logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from absl import logging

from jaxdl.errors import ConfigError, check_choice
from jaxdl.train import config_history

BACKENDS = ("jsonl", "tensorboard", "wandb", "mlflow")
# backend: (the module it imports, the pip extra that installs it); tensorboardX is jaxdl's.
_PACKAGES = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}
IDS_FILE = "trackers.json"  # each tracker's run identity, for a resumed run
PARENT_FILE = "mlflow_parent.json"  # in a sweep's directory: its MLflow parent run
_MLFLOW_BATCH = 100  # MLflow's limit of params per log_batch


def parse_writers(text: str) -> list[str]:
    """The trackers `train.writers` names beyond jsonl (always on), in order; an unknown
    name, or one whose package is missing, is a ConfigError naming the extra."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    for name in names:
        check_choice("train.writers", name, BACKENDS)
    for name in names:
        module, extra = _PACKAGES.get(name, (None, None))
        if module and importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"train.writers={name} needs the {module} package: pip install -e '.[{extra}]'"
            )
    return [n for n in names if n != "jsonl"]


def trial_overrides(sweep_dir: Path, varied: dict) -> dict:
    """The config overrides that group a trial of the sweep in `sweep_dir` with its
    varied values (what jaxdl/sweeps adds to each trial's own overrides)."""
    return {
        "train.group": str(Path(sweep_dir).absolute()),
        "train.trial": json.dumps(varied, sort_keys=True),
    }


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who a run is, as trackers show it."""

    workdir: Path
    project: str  # W&B project, MLflow experiment
    tracking_uri: str  # MLflow's store
    group: str  # the sweep's name ("" if the run is no trial)
    group_dir: Path | None  # the sweep's directory
    trial: dict  # the trial's varied values
    config: dict  # the resolved config, nested

    @property
    def name(self) -> str:
        return self.workdir.name

    @classmethod
    def of(cls, config, workdir: Path) -> "Identity":
        train = config.train
        group_dir = Path(train.group) if train.group else None
        store = group_dir or Path(workdir)
        uri = train.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        return cls(
            workdir=Path(workdir).absolute(),
            project=train.project,
            tracking_uri=uri or f"sqlite:///{store.absolute() / 'mlflow.db'}",
            group=group_dir.name if group_dir else "",
            group_dir=group_dir,
            trial=json.loads(train.trial) if train.trial else {},
            config=json.loads(config.to_json_best_effort()),
        )

    def flat_config(self) -> dict:
        """{"optimizer.learning_rate": 0.001, ...}: numbers, strings and booleans."""
        flat = config_history.flat(self.config)
        return {
            k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in flat.items()
        }


class TensorBoard:
    """workdir/tensorboard/: an event file written synchronously (tensorboardX's record
    writer without its flush thread, which failed at exit on a full disk); the config
    as the hparams plugin's hyperparameters, pictures as images."""

    def __init__(self, identity: Identity, ids: dict):
        from tensorboardX.event_file_writer import EventsWriter

        folder = identity.workdir / "tensorboard"
        folder.mkdir(parents=True, exist_ok=True)
        self._events = EventsWriter(str(folder / "events"))
        self.ids: dict = {}
        from tensorboardX.summary import hparams

        values = {
            **identity.flat_config(),
            **{f"trial/{k}": str(v) for k, v in identity.trial.items()},
        }
        # The session's hyperparameters alone: without an experiment summary, TensorBoard's
        # hparams dashboard takes every scalar of the run as its metrics.
        _, session_start, _ = hparams(values, {})
        self._write(0, session_start)

    def _write(self, step: int, summary) -> None:
        from tensorboardX.proto.event_pb2 import Event

        self._events.write_event(Event(wall_time=time.time(), step=step, summary=summary))
        self._events.flush()

    def scalars(self, step: int, values: dict) -> None:
        from tensorboardX.proto.summary_pb2 import Summary

        tags = [Summary.Value(tag=k, simple_value=v) for k, v in values.items()]
        self._write(step, Summary(value=tags))

    def images(self, step: int, images: dict) -> None:
        from tensorboardX.proto.summary_pb2 import Summary
        from tensorboardX.summary import image

        values = []
        for name, array in images.items():
            formats = "HW" if np.ndim(array) == 2 else "HWC"
            values += image(name, np.asarray(array), dataformats=formats).value
        self._write(step, Summary(value=values))

    def close(self) -> None:
        self._events.close()


class Wandb:
    """A Weights & Biases run named after the workdir, its id kept for resume; the config
    as its config; a sweep's trials in the sweep's group."""

    def __init__(self, identity: Identity, ids: dict):
        import wandb

        online = os.environ.get("WANDB_MODE", "online") in ("online", "run")
        if online and not wandb.login(prompt=False, verify=False):  # (it never asks here)
            raise RuntimeError("not logged in to W&B: wandb login, or WANDB_MODE=offline")
        run_id = ids.get("id") or uuid.uuid4().hex[:12]
        self.ids = {"id": run_id}
        # W&B writes its files a moment later: a killed run's last rows may be missing
        # there, so a resumed offline run sends what comes after W&B's own last step.
        self.last_step = None if online else _wandb_last_step(identity.workdir, run_id)
        settings = wandb.Settings(
            console="off",
            x_disable_stats=True,
            save_code=False,
            silent=True,
            # Its files are written every 15 s by default: a kill lost up to 15 s of rows
            # there (the resume sends them again: last_step).
            x_transaction_log_flush_interval=0.5,
        )
        self._run = wandb.init(
            project=identity.project,
            id=run_id,
            resume="allow",
            dir=str(identity.workdir),
            name=identity.name,
            group=identity.group or None,
            config={**identity.config, **({"trial": identity.trial} if identity.trial else {})},
            settings=settings,
            reinit="create_new",  # vmapped trials: one run each, in one process
        )
        self._wandb = wandb

    def scalars(self, step: int, values: dict) -> None:
        self._run.log(values, step=step)

    def images(self, step: int, images: dict) -> None:
        self._run.log({k: self._wandb.Image(np.asarray(v)) for k, v in images.items()}, step=step)

    def close(self) -> None:
        self._run.finish()


def _wandb_last_step(workdir: Path, run_id: str) -> int | None:
    """The last step the offline files of W&B run `run_id` under workdir hold, as W&B's
    own reader (`wandb leet inspect --summary`) gives it; None for a new run."""
    steps = [-1]
    for path in sorted((workdir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")):
        inspect = [sys.executable, "-m", "wandb", "leet", "inspect", "--summary", "--json"]
        out = subprocess.run([*inspect, str(path)], capture_output=True, text=True, check=True)
        steps.append(json.loads(out.stdout).get("step") or -1)
    return None if len(steps) == 1 else max(steps)


class Mlflow:
    """An MLflow run named after the workdir in experiment `project`, its id kept for
    resume; the config as params (those a resumed run lacks are added: params cannot
    change), pictures as images; a sweep's trials as child runs of one parent run."""

    def __init__(self, identity: Identity, ids: dict):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        # Its store's own lines (set-up; each failure with a traceback) say what the one
        # warning of a failure says; a server gone fails in seconds, not after minutes.
        std_logging.getLogger("mlflow.store.db.utils").setLevel(std_logging.CRITICAL)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        uri = ids.get("uri", identity.tracking_uri)
        # A sweep's trials share its store: one at a time, they create it (two SQLite
        # set-ups at once fail), its experiment and parent run, and their own runs.
        with _sweep_lock(identity.group_dir):
            self._client = MlflowClient(uri)
            if ids.get("run_id"):
                run_id = ids["run_id"]
                self._client.update_run(run_id, status="RUNNING")
            else:
                run_id = self._create_run(identity, uri)
            logged = self._client.get_run(run_id).data.params
            config = identity.flat_config().items()
            params = [Param(k, str(v)[:6000]) for k, v in config if k not in logged]
            for start in range(0, len(params), _MLFLOW_BATCH):
                self._client.log_batch(run_id, params=params[start : start + _MLFLOW_BATCH])
        self.ids = {"uri": uri, "run_id": run_id}
        self._run_id = run_id

    def _create_run(self, identity: Identity, uri: str) -> str:
        experiment = _experiment(self._client, identity.project, uri)
        tags = {"jaxdl.workdir": str(identity.workdir)}
        if identity.group_dir is not None:
            tags["jaxdl.group"] = identity.group
            tags["jaxdl.trial"] = json.dumps(identity.trial, sort_keys=True)
            tags["mlflow.parentRunId"] = _parent_run(self._client, experiment, identity, uri)
        return self._client.create_run(experiment, run_name=identity.name, tags=tags).info.run_id

    def scalars(self, step: int, values: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        self._client.log_batch(self._run_id, metrics=metrics)

    def images(self, step: int, images: dict) -> None:
        for name, array in images.items():
            self._client.log_image(self._run_id, np.asarray(array), key=name, step=step)

    def close(self) -> None:
        self._client.set_terminated(self._run_id)


_OPEN = {"tensorboard": TensorBoard, "wandb": Wandb, "mlflow": Mlflow}


def _experiment(client, name: str, uri: str) -> str:
    """The id of experiment `name`, created if new: with a local SQLite store, its
    artifacts (pictures) in mlartifacts/ beside the store; elsewhere where the server
    keeps them."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        location = None
        if uri.startswith("sqlite:///"):
            store = Path(uri.removeprefix("sqlite:///"))
            location = (store.parent / "mlartifacts").absolute().as_uri()
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by another trial of the sweep
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _parent_run(client, experiment: str, identity: Identity, uri: str) -> str:
    """The sweep's parent run in this store (under _sweep_lock): created by its first
    trial, named in sweep_dir/mlflow_parent.json, then reused."""
    path = identity.group_dir / PARENT_FILE
    parents = json.loads(path.read_text()) if path.exists() else {}
    if uri not in parents:
        tags = {"jaxdl.group": identity.group, "jaxdl.sweep_dir": str(identity.group_dir)}
        parents[uri] = client.create_run(experiment, run_name=identity.group, tags=tags).info.run_id
        path.write_text(json.dumps(parents, indent=1) + "\n")
    return parents[uri]


@contextlib.contextmanager
def _sweep_lock(group_dir: Path | None):
    """Held by one trial of the sweep in `group_dir` at a time (none: not a trial)."""
    if group_dir is None:
        yield
        return
    group_dir.mkdir(parents=True, exist_ok=True)
    with (group_dir / f".{PARENT_FILE}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class Trackers:
    """The trackers of `names` for one run, each failing soft (module doc)."""

    def __init__(self, names: list[str], config, workdir: Path, logged_until: int | None):
        self.workdir = Path(workdir)
        self._logged_until = -1 if logged_until is None else logged_until
        self._live: dict = {}
        if not names:
            return
        identity = Identity.of(config, self.workdir)
        ids = _read_json(self.workdir / IDS_FILE)
        for name in names:
            self._call(name, lambda name=name: self._open(name, identity, ids.get(name, {})))
        kept = {**ids, **{name: t.ids for name, t in self._live.items() if t.ids}}
        if kept != ids:
            try:
                (self.workdir / IDS_FILE).write_text(json.dumps(kept, indent=1) + "\n")
            except OSError as e:
                logging.warning("could not write %s: %s", self.workdir / IDS_FILE, e)

    def _open(self, name: str, identity: Identity, ids: dict) -> None:
        self._live[name] = _OPEN[name](identity, ids)

    def scalars(self, step: int, values: dict) -> None:
        self._call_all(lambda t: t.scalars(step, values), step)

    def images(self, step: int, images: dict) -> None:
        if images:
            self._call_all(lambda t: t.images(step, images), step)

    def close(self) -> None:
        self._call_all(lambda t: t.close())
        self._live.clear()

    def _call_all(self, fn, step: int | None = None) -> None:
        """fn(tracker) for each live tracker; with a `step`, only where it is new to the
        tracker: after the last step it holds (its own `last_step`, else logged_until)."""
        for name, tracker in list(self._live.items()):
            held = getattr(tracker, "last_step", None)
            if step is None or step > (self._logged_until if held is None else held):
                self._call(name, lambda tracker=tracker: fn(tracker))

    def _call(self, name: str, fn) -> None:
        try:
            fn()
        except Exception as e:  # any tracker's failure: its packages raise many kinds
            logging.warning(
                "train.writers: %s failed (%s); it is off for the rest of this run "
                "(metrics.jsonl has every row)",
                name,
                _why(e),
            )
            tracker = self._live.pop(name, None)
            if tracker is not None:
                with contextlib.suppress(Exception):  # failing already: warned once
                    tracker.close()


def _why(error: BaseException) -> str:
    """What failed, in words: the innermost cause's (a store's error wraps the disk's)."""
    from jaxdl.train.checkpoint import describe_os_error

    while error.__cause__ is not None:
        error = error.__cause__
    return describe_os_error(error)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
