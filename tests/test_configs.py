"""Models and tasks registered with their defaults, composed and checked by configs."""

import importlib
import pkgutil

import ml_collections
import pytest

import experiments
from jaxdl import configs, registry, sweeps, tasks
from jaxdl.errors import ConfigError

INFO = {
    "name": "test",
    "class_names": list("0123456789"),
    "image_shape": [28, 28, 1],
    "vocab": list("abc"),
    "words": ["<pad>", "<unk>", "a"],
}


def test_base_config_holds_the_named_entries_defaults():
    config = configs.base_config(model="mlp")
    entry = registry.lookup("model", "mlp")
    assert config.model.to_dict() == {"name": "mlp", **entry.defaults} != {}
    assert config.task.name == "classify" and "label_smoothing" in config.task
    assert set(config.optimizer) >= {"learning_rate", "clip", "schedule"}


def test_switch_replaces_a_section_by_another_entrys_defaults():
    config = configs.base_config()
    config.model.dense = 7
    configs.switch(config, "model", "cnn")  # the same name: kept as it is
    assert config.model.dense == 7
    configs.switch(config, "model", "rnn_lm")
    assert config.model.to_dict() == configs.section("model", "rnn_lm").to_dict()
    assert config.task.name == "classify"  # the other sections stay


def test_resolve_fills_missing_keys_and_names_the_bad_one():
    config = configs.base_config(model="dcgan", task="gan")
    del config.model["g_width"]
    del config.task.d_optimizer["b1"]
    resolved = configs.resolve(config)
    assert resolved.model.g_width == registry.lookup("model", "dcgan").defaults["g_width"]
    assert resolved.task.d_optimizer.b1 == 0.5 and "g_width" not in config.model  # a copy
    cases = [
        (("model", "conv_impl2", "xla"), r"unknown config key model\.conv_impl2 for model 'dcgan'"),
        (("task", "r1_gamma", "big"), r"task\.r1_gamma='big' must be a float"),
        (("model", "g_width", 1.5), r"model\.g_width=1\.5 must be a int"),
        (("train", "num_epoch", 3), r"unknown config key train\.num_epoch for the train section"),
        (("model", "name", "nope"), r"model\.name='nope' is not one of \['autoencoder'"),
    ]
    for (section, key, value), message in cases:
        bad = configs.base_config(model="dcgan", task="gan")
        bad[section] = {**bad[section].to_dict(), key: value}  # as an experiment may write
        with pytest.raises(ConfigError, match=message):
            configs.resolve(bad)
    ok = configs.base_config()
    ok.optimizer.learning_rate = 1  # an int where a float is expected
    ok.model.stages = [[8], [16]]  # a list where a tuple is
    configs.resolve(ok)


def test_a_saved_config_takes_the_legacy_value_of_keys_it_predates():
    config = configs.base_config(model="dcgan", task="gan")
    del config.task["aux_classifier"]  # written before the class head existed
    assert configs.resolve(config).task.aux_classifier == 0.2
    assert configs.resolve(config, saved=True).task.aux_classifier == 0.0


def test_a_name_registers_once():
    entry = registry.lookup("model", "mlp")
    registry.model("mlp", family="classifier", **entry.defaults)(entry.build)  # a re-import
    with pytest.raises(ValueError, match="registered twice"):
        registry.model("mlp", family="classifier")(lambda cfg, info: None)


def test_task_and_model_must_fit_each_other_and_the_data():
    config = configs.base_config(model="rnn_lm")
    with pytest.raises(ConfigError, match=r"trains classifier models \(cnn, mlp\); model 'rnn_"):
        tasks.build(config, INFO, 10)
    with pytest.raises(ConfigError, match="needs a data set with vocab"):
        tasks.build(configs.base_config(model="rnn_lm", task="lm"), {"name": "x"}, 10)


def test_every_experiment_resolves_and_builds_its_task():
    for module in pkgutil.iter_modules(experiments.__path__):
        config = importlib.import_module(f"experiments.{module.name}").get_config()
        task = tasks.build(config, INFO, 100)
        assert isinstance(task, tasks.Task), module.name


def test_sweep_overrides_switch_a_model_first():
    trial = sweeps.apply_overrides(
        configs.base_config(), {"model.name": "mlp", "model.hidden": (16,)}
    )
    assert trial.model.to_dict() == {"name": "mlp", "hidden": (16,), "dropout": 0.0}
    assert isinstance(trial, ml_collections.ConfigDict)
