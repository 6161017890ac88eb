"""A run from one plan (train/plan.py): the train section's checks in one place, the
outputs' interface declared and kept by every implementation."""

import pytest

import experiments.fashion_cnn_tiny as tiny
from jaxdl import configs
from jaxdl.errors import ConfigError
from jaxdl.train import plan
from jaxdl.train.loop import Outputs
from jaxdl.train.rundir import RunDir
from jaxdl.train.trials import TrialRunDirs
from tests.train.test_loop import RecordingRunDir


def members(protocol) -> set[str]:
    return {name for name in vars(protocol) if not name.startswith("_")}


def test_every_outputs_implementation_has_the_declared_methods(tmp_path):
    declared = members(Outputs) | members(plan.RunOutputs)
    assert {"write", "save", "check_finite", "restore", "start", "result", "path"} <= declared
    run_dir = RunDir(tmp_path, configs.resolve(tiny.get_config()), keep_checkpoints=1)
    try:
        assert isinstance(run_dir, plan.RunOutputs)
    finally:
        run_dir.close()
    assert not [name for name in declared if not hasattr(TrialRunDirs, name)]
    assert isinstance(RecordingRunDir(), Outputs)  # the loop tests' double


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("num_steps", -1, "train.num_steps=-1 must be >= 0"),
        ("log_every", 0, "train.log_every=0 must be > 0"),
        ("profile", "5", "train.profile='5' must be START:STOP"),
        ("compute_dtype", "float8", "train.compute_dtype='float8' is not one of"),
        ("microbatches", 5, "data.batch_size=32 must divide into train.microbatches=5"),
        ("param_sharding", "rows", "train.param_sharding='rows' is not one of"),
    ],
)
def test_the_train_section_is_checked_in_one_place(key, value, message):
    config = configs.resolve(tiny.get_config())
    config.train[key] = value
    with pytest.raises(ConfigError, match=message):
        plan.check_train_section(config)


def test_total_steps_are_the_steps_or_the_epochs_batches():
    train = configs.resolve(tiny.get_config()).train
    assert plan.total_steps(train, batches_per_epoch=7) == 20
    train.update(num_steps=0, num_epochs=1.5)
    assert plan.total_steps(train, batches_per_epoch=7) == 11
