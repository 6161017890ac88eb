"""Models and tasks registered with their defaults, composed and checked by configs."""

import importlib
import pkgutil

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


TASK_CLASSES = {
    "classify": "ClassifyTask",
    "autoencode": "AutoencodeTask",
    "gan": "GANTask",
    "lm": "LanguageModelTask",
    "classify_documents": "DocumentClassifyTask",
}


def test_every_experiment_resolves_and_builds_its_task():
    built = {}
    for module in pkgutil.iter_modules(experiments.__path__):
        config = configs.resolve(importlib.import_module(f"experiments.{module.name}").get_config())
        task = tasks.build(config, INFO, 100)
        built[module.name] = type(task).__name__
        assert built[module.name] == TASK_CLASSES[config.task.name], module.name
        task_entry = registry.lookup("task", config.task.name)
        assert registry.lookup("model", config.model.name).family == task_entry.family
        assert task_entry.needs in registry.lookup("data", config.data.name).provides
    assert len(built) >= 19 and set(built.values()) == set(TASK_CLASSES.values())
    assert built["fashion_cnn"] == "ClassifyTask" and built["polarity_han"] == (
        "DocumentClassifyTask"
    )


def test_sweep_overrides_switch_a_model_first():
    base = configs.base_config()
    trial = sweeps.apply_overrides(base, {"model.name": "mlp", "model.hidden": (16,)})
    assert trial.model.to_dict() == {"name": "mlp", "hidden": (16,), "dropout": 0.0}
    assert base.model.name == "cnn"  # a copy: the config it started from is unchanged
    assert trial.task.to_dict() == base.task.to_dict() and trial.seed == base.seed


def test_a_name_set_by_hand_switches_the_section_as_the_flag_does():
    config = configs.base_config()
    config.model.name = "mlp"  # on the section made for "cnn", as in a notebook
    assert configs.resolve(config).model.to_dict() == configs.section("model", "mlp").to_dict()
    config.model.hidden = (64,)  # mlp's keys set after (or before) the name stay
    config.model.dropout = 0.25  # a key both have: set by hand, kept
    assert configs.resolve(config).model.to_dict() == {
        "name": "mlp",
        "hidden": (64,),
        "dropout": 0.25,
    }
    config.task.name = "classify"  # the same name: nothing to switch
    assert configs.resolve(config).task.label_smoothing == 0.0
    data = configs.base_config()
    data.data.name = "mnist"  # a source with the same keys
    data.data.batch_size = 64
    assert configs.resolve(data).data.to_dict() == {
        **configs.section("data", "mnist").to_dict(),
        "batch_size": 64,
    }
    data.data.name = "tiny_shakespeare"  # other keys: the shared ones that were set stay
    resolved = configs.resolve(data).data
    assert resolved.name == "tiny_shakespeare" and resolved.batch_size == 64
    assert "train_split" not in resolved and resolved.window == 128
    # switch, which did nothing once the name was set, now makes the section too.
    config = configs.base_config()
    config.model.name = "mlp"
    configs.switch(config, "model", "mlp")
    assert config.model.to_dict() == configs.section("model", "mlp").to_dict()


def test_a_name_set_by_hand_on_a_changed_section_says_to_switch_first():
    config = configs.base_config()
    config.model.stem_block = 2  # a key of the cnn only, changed
    config.model.name = "mlp"
    with pytest.raises(ConfigError) as error:
        configs.resolve(config)
    assert str(error.value) == (
        "model.name='mlp' was set on the section of model 'cnn', whose model.stem_block was "
        "changed, a key 'mlp' lacks: switch the section first (configs.switch(config, "
        "'model', 'mlp')), then set its keys"
    )
    config = configs.base_config()
    config.model.name = "mlp"
    config.model.hiden = (64,)  # a key of neither
    with pytest.raises(ConfigError, match=r"unknown config key model\.hiden for model 'mlp'"):
        configs.resolve(config)


def test_base_config_picks_the_tasks_data_for_every_registered_pair():
    picked = {
        task: configs.base_config(
            model=next(m for m in registry.names("model") if _family(m) == _task_family(task)),
            task=task,
        ).data.name
        for task in registry.names("task")
    }
    assert picked == {
        "autoencode": "fashion_mnist",
        "classify": "fashion_mnist",
        "classify_documents": "review_polarity",
        "gan": "fashion_mnist",
        "lm": "tiny_shakespeare",
    }
    pairs = [
        (m, t)
        for t in registry.names("task")
        for m in registry.names("model")
        if _family(m) == _task_family(t)
    ]
    assert len(pairs) == 6  # cnn and mlp classify; one model for each other task
    for model, task in pairs:
        config = configs.base_config(model=model, task=task)
        resolved = configs.resolve(config)  # complete as it is: the source's own keys
        assert resolved.to_dict() == config.to_dict(), (model, task)
        source = registry.lookup("data", config.data.name)
        assert registry.lookup("task", task).needs in source.provides, (model, task)
    han = configs.base_config(model="han", task="classify_documents").data
    assert han.max_sentences > 0 and han.max_words > 0 and han.min_count >= 1


def test_a_task_without_its_own_data_gets_the_first_source_that_provides_its_needs(
    monkeypatch,
):
    monkeypatch.setitem(registry._ENTRIES, "task", dict(registry._ENTRIES["task"]))
    registry.task("count_words", model_family="document_classifier", needs="words")(None)
    assert configs.default_data("count_words") == "document_table"  # the first by name
    registry.task("read_minds", model_family="classifier", needs="thoughts")(None)
    with pytest.raises(ConfigError, match="task 'read_minds' needs thoughts, which no data"):
        configs.base_config(task="read_minds")


def _family(model: str) -> str:
    return registry.lookup("model", model).family


def _task_family(task: str) -> str:
    return registry.lookup("task", task).family
