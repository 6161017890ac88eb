"""A newcomer's model: two new files, no edit anywhere else, trained by launch/train.py;
and `--config.model.name` switching to any registered model from the command line."""

import json

import pytest

from jaxdl.train import read_metrics
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

MODEL_FILE = '''
"""A two-layer perceptron, registered as a classifier model."""
import flax.linen as nn

from jaxdl import registry


class TwoLayerMLP(nn.Module):
    num_classes: int
    width: int

    @nn.compact
    def __call__(self, x, train, penultimate=False):
        x = nn.relu(nn.Dense(self.width)(x.reshape(x.shape[0], -1)))
        return x if penultimate else nn.Dense(self.num_classes)(x)


@registry.model("two_layer_mlp", family="classifier", width=64)
def build(cfg, info):
    return TwoLayerMLP(len(info["class_names"]), cfg.width)
'''

EXPERIMENT_FILE = """
import two_layer_mlp  # registers the model

from jaxdl.configs import base_config


def get_config():
    config = base_config(model="two_layer_mlp")
    config.data.update(batch_size=32, eval_batch_size=250)
    config.train.update(num_epochs=0, num_steps=6, log_every=3, eval_every=6, plot=False)
    return config
"""


def test_a_model_in_its_own_file_trains_through_the_launcher(launch, synthetic_data_dir, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "two_layer_mlp.py").write_text(MODEL_FILE)
    (code / "my_experiment.py").write_text(EXPERIMENT_FILE)
    workdir = tmp_path / "run"
    result = launch(
        f"--config={code / 'my_experiment.py'}",
        f"--workdir={workdir}",
        f"--config.data.data_dir={synthetic_data_dir}",
        "--config.model.width=16",
        env={"PYTHONPATH": str(code)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "task classify, 12,730 parameters" in result.stderr  # 784*16+16 + 16*10+10
    rows = read_metrics(workdir)
    assert [r["step"] for r in rows] == [3, 6] and "eval/accuracy" in rows[-1]
    model = json.loads((workdir / "config.json").read_text())["model"]
    assert model == {"name": "two_layer_mlp", "width": 16}


def test_the_command_line_switches_to_any_registered_model(launch, synthetic_data_dir, tmp_path):
    workdir = tmp_path / "run"
    result = launch(
        f"--config={ROOT}/experiments/fashion_cnn_tiny.py",
        f"--workdir={workdir}",
        f"--config.data.data_dir={synthetic_data_dir}",
        "--config.model.name=mlp",
        "--config.model.hidden=(16,)",
        "--config.train.num_steps=4",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model = json.loads((workdir / "config.json").read_text())["model"]
    assert model == {"name": "mlp", "hidden": [16], "dropout": 0.0}
    bad = launch(
        f"--config={ROOT}/experiments/fashion_cnn_tiny.py",
        f"--workdir={tmp_path / 'bad'}",
        "--config.model.name=transformer",
    )
    assert bad.returncode == 2
    (line,) = [x for x in bad.stderr.splitlines() if x.startswith("error:")]
    assert "model.name='transformer' is not one of ['autoencoder', 'cnn', 'dcgan'" in line
