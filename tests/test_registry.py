"""The registry's discovery: a module that fails to import breaks only the lookups of the
names it would have registered, and their error names its file; the modules a run records
(run.json's `modules`) and imports again."""

import importlib.machinery
import json
import re
import sys

import numpy as np
import pytest

import jaxdl.models
from jaxdl import configs, registry
from jaxdl.errors import ConfigError
from jaxdl.train import run_info

BROKEN = """
import nonexistent_pkg  # noqa: F401
from jaxdl import registry


@registry.model("broken_mlp", family="classifier", width=8)
def build(cfg, info):
    raise AssertionError("never built")
"""


@pytest.fixture
def broken_model_file(tmp_path, monkeypatch):
    """jaxdl/models/ with one more file, broken_mlp.py, that fails to import (in a
    temporary folder on the package's path), discovered afresh."""
    (tmp_path / "broken_mlp.py").write_text(BROKEN)
    monkeypatch.setattr(jaxdl.models, "__path__", [*jaxdl.models.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_discovered", False)
    monkeypatch.setattr(registry, "_FAILED", {kind: {} for kind in registry.KINDS})
    return tmp_path / "broken_mlp.py"


def test_a_module_that_fails_to_import_breaks_only_the_names_it_registers(broken_model_file):
    with pytest.raises(ConfigError) as error:
        registry.lookup("model", "broken_mlp")
    assert str(error.value) == (
        "model.name='broken_mlp' is not one of ['autoencoder', 'cnn', 'dcgan', 'han', 'mlp', "
        f"'rnn_lm']; {broken_model_file} failed to import (No module named 'nonexistent_pkg')"
    )
    assert "jaxdl.models.broken_mlp" not in sys.modules
    # Every other model, and every experiment of them, still resolves.
    assert registry.lookup("model", "cnn").family == "classifier"
    assert configs.resolve(configs.base_config(model="mlp")).model.name == "mlp"
    # The other kinds' errors do not name it.
    with pytest.raises(ConfigError) as error:
        registry.lookup("task", "classify_images")
    assert "failed to import" not in str(error.value)


def test_a_broken_file_inside_jaxdl_is_named_by_its_path_in_the_package(monkeypatch):
    monkeypatch.setattr(registry, "_FAILED", {kind: {} for kind in registry.KINDS})
    assert not registry.import_module(
        "model", "jaxdl.models.not_there", shown="jaxdl/models/not_there.py", warn=False
    )
    with pytest.raises(ConfigError, match=r"; jaxdl/models/not_there.py failed to import \("):
        registry.lookup("model", "not_there")


def test_a_run_records_the_modules_of_its_entries_and_imports_them_again(tmp_path, monkeypatch):
    # A model of one's own, in a folder that is not on sys.path (as a notebook's would be).
    package = tmp_path / "mine" / "my_models"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "own.py").write_text(
        "from jaxdl import registry\nfrom jaxdl.models import mlp\n\n\n"
        "@registry.model('own_mlp', family='classifier', hidden=(32,), dropout=0.0)\n"
        "def build(cfg, info):\n    return mlp.build(cfg, info)\n"
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setitem(registry._ENTRIES, "model", dict(registry._ENTRIES["model"]))
    record = {
        "modules": {"model": "my_models.own", "task": "jaxdl.tasks.classify"},
        "module_paths": {"my_models.own": str(tmp_path / "mine")},
    }
    try:
        run_info.import_modules(record)
        assert registry.lookup("model", "own_mlp").build.__module__ == "my_models.own"
        config = configs.base_config(model="own_mlp")
        assert run_info.module_record(config)["module_paths"] == {
            "my_models.own": str(tmp_path / "mine")
        }
    finally:
        for name in ("my_models", "my_models.own"):
            sys.modules.pop(name, None)
    run_info.import_modules({"data": {}})  # a run.json written before the record: nothing


def test_run_json_holds_the_record(tmp_path):
    example = {"image": np.zeros((2, 28, 28, 1), np.uint8)}
    modules = run_info.module_record(configs.base_config())
    backend = {"name": "cpu", "device_kind": "cpu", "auto": {}}
    run_info.write_run_info(tmp_path, {"name": "x"}, example, 10, backend, modules)
    record = json.loads((tmp_path / run_info.RUN_INFO_FILE).read_text())
    assert record["modules"] == {
        "model": "jaxdl.models.cnn",
        "task": "jaxdl.tasks.classify",
        "data": "jaxdl.datasets.named_images",
    }
    assert "module_paths" not in record  # all of them inside jaxdl


def test_every_info_key_a_source_provides_is_written_in_the_task_contract():
    from jaxdl.tasks import base

    provided = {k for n in registry.names("data") for k in registry.lookup("data", n).provides}
    assert provided == {"class_names", "image_shape", "vocab", "words"}
    documented = set(re.findall(r"^    (\w+) {2,}", base.__doc__, re.MULTILINE))
    assert provided <= documented, provided - documented
    needed = {registry.lookup("task", n).needs for n in registry.names("task")}
    assert needed <= provided


def test_an_experiment_file_that_registers_its_own_model_is_recorded_by_its_file(
    tmp_path, monkeypatch
):
    # ml_collections loads an experiment file under another name (config_config): the
    # record names the file's own module, which a tool can import from its folder.
    (tmp_path / "all_in_one.py").write_text(
        "from jaxdl import registry\nfrom jaxdl.models import mlp\n\n\n"
        "@registry.model('inline_mlp', family='classifier', hidden=(8,), dropout=0.0)\n"
        "def build(cfg, info):\n    return mlp.build(cfg, info)\n"
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setitem(registry._ENTRIES, "model", dict(registry._ENTRIES["model"]))
    loader = importlib.machinery.SourceFileLoader("config_config", str(tmp_path / "all_in_one.py"))
    monkeypatch.setitem(sys.modules, "config_config", loader.load_module())
    assert registry.module_of("model", "inline_mlp") == ("all_in_one", str(tmp_path))
    del registry._ENTRIES["model"]["inline_mlp"]  # as in a tool's process: not registered
    try:
        run_info.import_modules(
            {"modules": {"model": "all_in_one"}, "module_paths": {"all_in_one": str(tmp_path)}}
        )
        assert registry.lookup("model", "inline_mlp").build.__module__ == "all_in_one"
    finally:
        sys.modules.pop("all_in_one", None)
