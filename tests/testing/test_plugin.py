"""jaxdl's pytest plugin, as a user's tests get it: found through its entry point (this
file imports nothing of it), its fixtures give generated data a launcher trains on."""

import importlib.metadata
from pathlib import Path

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "fashion_cnn_tiny.py"


def test_the_plugin_is_installed_as_an_entry_point():
    plugins = importlib.metadata.entry_points(group="pytest11")
    assert [p.value for p in plugins if p.name == "jaxdl"] == ["jaxdl.testing.plugin"]


def test_generated_data_trains_through_the_launcher(jaxdl_images, jaxdl_train, tmp_path):
    overrides = {f"data.{key}": value for key, value in jaxdl_images.items()}
    rows = jaxdl_train(
        EXPERIMENT,
        steps=4,
        overrides={**overrides, "train.log_every": 2, "train.plot": False},
        workdir=tmp_path / "run",
    )
    assert [row["step"] for row in rows if "train/loss" in row] == [2, 4]
    assert rows[-1]["step"] == 4 and 0 <= rows[-1]["eval/accuracy"] <= 1


def test_each_kind_of_generated_data_reads(jaxdl_tokens, jaxdl_documents):
    from jaxdl import data

    for section in (jaxdl_tokens, jaxdl_documents):
        inputs = data.build_input(_config(section), seed=0)
        assert inputs.info["num_train"] > 0 and inputs.info["num_eval"] > 0


def _config(section: dict):
    from jaxdl import configs

    config = configs.section("data", section["name"])
    config.update(section)
    return config


def test_simulated_devices_in_a_subprocess(jaxdl_run_with_devices):
    assert jaxdl_run_with_devices("import jax; print(jax.device_count())", devices=3) == "3\n"
