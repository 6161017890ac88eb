"""A resume is the same run or says why not: config_history.py and RunDir.accept_config."""

import json

import pytest

import experiments.fashion_cnn_tiny as tiny
from jaxdl import configs
from jaxdl.errors import UserError
from jaxdl.train import config_history
from jaxdl.train.rundir import RunDir
from tests.train.test_reliability import two_checkpoints


def tiny_config(**changes):
    config = configs.resolve(tiny.get_config())
    for key, value in changes.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


def test_changes_name_each_key_old_and_new_and_split_off_reporting_keys():
    saved = tiny_config()
    now = tiny_config(**{"optimizer.learning_rate": 0.5, "train.log_every": 7})
    changed = config_history.changes(saved, now)
    assert changed == {"optimizer.learning_rate": (0.003, 0.5), "train.log_every": (5, 7)}
    assert config_history.computing(changed) == {"optimizer.learning_rate": (0.003, 0.5)}
    assert config_history.describe(changed) == (
        "optimizer.learning_rate 0.003 -> 0.5, train.log_every 5 -> 7"
    )
    assert config_history.changes(saved, tiny_config()) == {}  # tuples equal JSON's lists


def accept(workdir, config, allow=False):
    rundir = RunDir(workdir, config, keep_checkpoints=3)
    try:
        rundir.accept_config(allow)
    finally:
        rundir.close()


def test_a_resume_that_computes_otherwise_is_refused_naming_each_key(tmp_path):
    workdir = tmp_path / "run"
    two_checkpoints(workdir)
    changed = tiny_config(**{"train.num_steps": 40, "optimizer.learning_rate": 0.5})
    with pytest.raises(UserError) as error:
        accept(workdir, changed)
    message = str(error.value)
    assert "\n" not in message and "(to step 2)" in message
    assert "optimizer.learning_rate 0.003 -> 0.5, train.num_steps 20 -> 40" in message
    assert "--allow_config_change" in message
    assert not (workdir / config_history.HISTORY_FILE).exists()


def test_an_allowed_change_and_a_reporting_change_are_recorded(tmp_path):
    workdir = tmp_path / "run"
    two_checkpoints(workdir)
    accept(workdir, tiny_config(**{"train.num_steps": 40}), allow=True)
    reporting = {"train.max_seconds": 60.0, "data.workers": 2, "train.writers": "jsonl"}
    accept(workdir, tiny_config(**reporting))
    accept(workdir, tiny_config())  # the run's own config: nothing to record
    history = (workdir / config_history.HISTORY_FILE).read_text().splitlines()
    lines = [json.loads(line) for line in history]
    assert [line["step"] for line in lines] == [2, 2]
    assert lines[0]["changed"] == {"train.num_steps": [20, 40]}
    assert lines[1]["changed"] == {
        "data.workers": [0, 2],
        "train.max_seconds": [0.0, 60.0],
        "train.writers": ["jsonl,tensorboard", "jsonl"],
    }
    assert all(line["time"].endswith("+00:00") for line in lines)


def test_a_fresh_workdir_has_nothing_to_compare(tmp_path):
    accept(tmp_path / "run", tiny_config(**{"train.num_steps": 40}))
    assert not (tmp_path / "run" / config_history.HISTORY_FILE).exists()
