"""A newcomer's model: two new files in a folder of their own (not on PYTHONPATH), no
edit anywhere else, trained by launch/train.py and read again by the tools; and
`--config.model.name` switching to any registered model from the command line."""

import json

import pytest

from jaxdl.train import read_metrics
from tests.conftest import ROOT, run_script

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


def test_a_model_in_its_own_folder_trains_and_every_tool_finds_it_again(
    launch, synthetic_data_dir, tmp_path
):
    code = tmp_path / "code"
    code.mkdir()
    (code / "two_layer_mlp.py").write_text(MODEL_FILE)
    (code / "my_experiment.py").write_text(EXPERIMENT_FILE)
    workdir = tmp_path / "run"
    result = launch(  # the experiment's folder is importable: no PYTHONPATH
        f"--config={code / 'my_experiment.py'}",
        f"--workdir={workdir}",
        f"--config.data.data_dir={synthetic_data_dir}",
        "--config.model.width=16",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "task classify, 12,730 parameters" in result.stderr  # 784*16+16 + 16*10+10
    rows = read_metrics(workdir)
    assert [r["step"] for r in rows] == [3, 6] and "eval/accuracy" in rows[-1]
    model = json.loads((workdir / "config.json").read_text())["model"]
    assert model == {"name": "two_layer_mlp", "width": 16}
    record = json.loads((workdir / "run.json").read_text())
    assert record["modules"] == {
        "model": "two_layer_mlp",
        "task": "jaxdl.tasks.classify",
        "data": "jaxdl.datasets.named_images",
    }
    assert record["module_paths"] == {"two_layer_mlp": str(code)}

    # A tool (load_run) and a resume from the run's own config import the model again.
    export = lambda out: run_script(
        "launch/export.py", f"--workdir={workdir}", f"--out={tmp_path / out}", "--platforms=cpu"
    )
    exported = export("export")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert json.loads((tmp_path / "export" / "export.json").read_text())["run"]["step"] == 6
    again = launch(f"--config={workdir}", f"--workdir={workdir}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from step 6" in again.stderr

    # Gone from its folder: one line names the module and why.
    code.rename(tmp_path / "moved")
    gone = export("export2")
    assert gone.returncode == 1
    assert gone.stderr.strip().splitlines()[-1] == (
        "error: model.name='two_layer_mlp' is not one of ['autoencoder', 'cnn', 'dcgan', 'han', "
        f"'mlp', 'rnn_lm']; two_layer_mlp (from {code}) failed to import "
        "(No module named 'two_layer_mlp')"
    )


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
