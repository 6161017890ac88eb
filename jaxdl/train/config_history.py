"""A resume is the same run, or says why not: the config given now against the one the
run's checkpoints were trained with (its config.json).

A key that changes what the run computes (optimizer, schedule, model, data, seed, steps:
every key but those below) refuses the resume with one line naming each changed key,
old -> new, unless the user allows it (launch/train.py --allow_config_change); then the
change is appended to workdir/config_history.jsonl (the step it applies from, the time,
each key's old and new value) and config.json says the new config. The keys of REPORTING
change only how the run is reported, paced or laid out on the machine (log and eval
cadence, time budget, profile, trackers, checkpoint cadence and the checkpoints kept,
data workers and prefetch, kernel and sharding choices), not its numbers: they pass,
and are recorded all the same, so config.json is never rewritten without a line saying
what changed.
"""

import datetime
import json
from pathlib import Path

import ml_collections

HISTORY_FILE = "config_history.jsonl"
REPORTING = frozenset(
    {
        "train.max_seconds",
        "train.log_every",
        "train.eval_every",
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "train.plot",
        "train.profile",
        "train.param_sharding",  # a checkpoint restores into any sharding
        # Where the run is reported (trackers.py) and which checkpoints are kept.
        "train.writers",
        "train.project",
        "train.tracking_uri",
        "train.group",
        "train.trial",
        "train.keep_best",
        "train.best_metric",
        "train.best_mode",
        "data.prefetch",
        "data.workers",  # batch k is the same rows whatever makes it
        "data.hold_mb",
        "data.eval_batch_size",  # eval sums every example once, padding masked
        "model.conv_impl",  # kernels of the same function (backends.py)
        "sweep.vmap",
        "sweep.vmap_chunk",
    }
)
_ABSENT = "(absent)"


def flat(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changes(saved: ml_collections.ConfigDict, now: ml_collections.ConfigDict) -> dict:
    """{dotted key: (saved value, value now)} for every key in which two resolved configs
    differ, compared as JSON (a tuple and a list of the same values are equal)."""
    old = flat(json.loads(saved.to_json_best_effort()))
    new = flat(json.loads(now.to_json_best_effort()))
    return {
        key: (old.get(key, _ABSENT), new.get(key, _ABSENT))
        for key in sorted(old.keys() | new.keys())
        if old.get(key, _ABSENT) != new.get(key, _ABSENT)
    }


def computing(changed: dict) -> dict:
    """The changes that change what a run computes (all but REPORTING's keys)."""
    return {key: values for key, values in changed.items() if key not in REPORTING}


def describe(changed: dict) -> str:
    """'optimizer.learning_rate 0.001 -> 0.5, model.dense 32 -> 64'."""
    return ", ".join(f"{key} {_shown(old)} -> {_shown(new)}" for key, (old, new) in changed.items())


def _shown(value) -> str:
    return value if value == _ABSENT else repr(value)


def record(workdir: str | Path, step: int, changed: dict) -> None:
    """Appends one line to workdir's config history: from which step, when, what."""
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    line = {"step": step, "time": now, "changed": {k: list(v) for k, v in changed.items()}}
    with (Path(workdir) / HISTORY_FILE).open("a") as history:
        history.write(json.dumps(line) + "\n")
