"""The TFDS branch of the data sources, run on TFDS's mock data (generated examples of each
set's real features, no download, no TensorFlow): what it builds has the structure,
dtypes and info of the local-copy path, the catalogue's experiments fit it, and offline
they fail with one line that says how to provide the data."""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdl import configs, data, tasks
from jaxdl.data import read_all, sources
from jaxdl.train import read_metrics
from tests.conftest import ROOT, run_launcher, run_script
from tests.train.test_train_e2e import assert_ok


@pytest.fixture
def mock_tfds(monkeypatch, tmp_path):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))  # nothing real is read
    with tfds.testing.mock_data(num_examples=40):
        yield


def structure(tree) -> dict:
    """{key: (shape past the leading axis, dtype)} of a dict of arrays."""
    return {k: (np.shape(v)[1:], np.asarray(v).dtype) for k, v in tree.items()}


def config_for(experiment: str, **data):
    module = __import__(f"experiments.{experiment}", fromlist=["get_config"])
    config = module.get_config()
    config.data.update(data)
    return config


def image_input(name: str, source: str, data_dir: str = "") -> data.Input:
    dcfg = config_for("fashion_cnn_tiny", name=name, source=source, data_dir=data_dir).data
    return data.build_input(dcfg, seed=0)


def test_an_image_set_through_tfds_is_built_as_its_local_copy(mock_tfds, synthetic_data_dir):
    local = image_input("fashion_mnist", "local", str(synthetic_data_dir))
    through_tfds = image_input("fashion_mnist", "tfds")
    assert through_tfds.info.keys() == local.info.keys()
    for key in ("name", "class_names", "image_shape"):
        assert through_tfds.info[key] == local.info[key], key
    assert through_tfds.info["origin"].startswith("TFDS ")
    assert (through_tfds.info["num_train"], through_tfds.info["num_eval"]) == (40, 40)
    assert structure(through_tfds.train.batch(0)) == structure(local.train.batch(0))
    assert structure(read_all(through_tfds.eval)) == structure(read_all(local.eval))


def test_mnist_and_cifar10_have_their_catalogue_shapes_and_classes(mock_tfds):
    mnist, cifar = image_input("mnist", "tfds"), image_input("cifar10", "tfds")
    assert mnist.info["image_shape"] == [28, 28, 1]
    assert mnist.info["class_names"] == list(sources.CLASS_NAMES["mnist"])
    assert cifar.info["image_shape"] == [32, 32, 3]
    assert len(cifar.info["class_names"]) == 10  # names: the mock lacks the downloaded file
    batch = cifar.train.batch(0)
    assert batch["image"].shape == (32, 32, 32, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int32 and batch["label"].max() < 10


def test_tiny_shakespeare_through_tfds_is_built_as_its_local_copy(mock_tfds, tmp_path):
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("To be, or not to be.\n" * 100)
    dcfg = lambda source: config_for("shakespeare_lstm_tiny", source=source, data_dir=str(tmp_path))
    local = data.build_input(dcfg("local").data, seed=0)
    through_tfds = data.build_input(dcfg("tfds").data, seed=0)
    assert through_tfds.info.keys() == local.info.keys()
    assert through_tfds.info["origin"].startswith("TFDS ")
    # The mock's text: 40 examples per split, joined as the real set's three splits are.
    assert through_tfds.info["num_train"] + through_tfds.info["num_eval"] > 3 * 40
    assert structure(through_tfds.train.batch(0)) == structure(local.train.batch(0))
    assert structure(read_all(through_tfds.eval)) == structure(read_all(local.eval))


# TFDS's class names: yelp's are its star classes, 1 (negative) and 2 (positive).
@pytest.mark.parametrize(
    ("name", "class_names"),
    [("imdb_reviews", ["neg", "pos"]), ("yelp_polarity_reviews", ["1", "2"])],
)
def test_review_sets_through_tfds_are_built_as_review_polarity(
    mock_tfds, polarity_data_dir, name, class_names
):
    local = data.build_input(
        config_for("polarity_han_tiny", data_dir=str(polarity_data_dir)).data, 0
    )
    tiny = config_for("polarity_han_tiny")
    configs.switch(tiny, "data", name)  # keeps the document limits
    through_tfds = data.build_input(tiny.data, seed=0)
    assert through_tfds.info.keys() == local.info.keys()
    assert through_tfds.info["class_names"] == class_names
    assert len(local.info["class_names"]) == 2
    assert (through_tfds.info["num_train"], through_tfds.info["num_eval"]) == (40, 40)
    assert structure(through_tfds.train.batch(0)) == structure(local.train.batch(0))
    assert structure(read_all(through_tfds.eval)) == structure(read_all(local.eval))


CATALOGUE = [
    ("mnist_cnn", {}),
    ("cifar10_cnn", {}),
    ("imdb_han", {}),
    ("imdb_han", {"name": "yelp_polarity_reviews"}),
]


@pytest.mark.parametrize(("experiment", "data_overrides"), CATALOGUE)
def test_catalogue_experiments_fit_their_data(mock_tfds, experiment, data_overrides):
    config = config_for(experiment, source="tfds", batch_size=4, **data_overrides)
    inputs = data.build_input(config.data, seed=0)
    task = tasks.build(config, inputs.info, total_steps=10)
    batch = inputs.train.batch(0)
    state = jax.eval_shape(task.init, jax.random.PRNGKey(0), batch)
    new_state, metrics = jax.eval_shape(task.train_step, state, batch)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert metrics["loss"].shape == ()


OFFLINE = {
    # A closed local port as the proxy: every download request is refused at once, here and
    # on a machine that could download.
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "",
}


@pytest.mark.slow
@pytest.mark.parametrize(("experiment", "data_overrides"), CATALOGUE)
def test_offline_a_catalogue_experiment_says_how_to_provide_its_data(
    tmp_path, experiment, data_overrides
):
    name = data_overrides.get("name", config_for(experiment).data.name)
    result = run_launcher(
        f"--config={ROOT}/experiments/{experiment}.py",
        f"--workdir={tmp_path / 'run'}",
        f"--config.data.data_dir={tmp_path / 'no_copies'}",
        *(f"--config.data.{k}={v}" for k, v in data_overrides.items()),
        env={**OFFLINE, "TFDS_DATA_DIR": str(tmp_path / "tfds")},
        timeout=120,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: data set '{name}' split 'train' not found in "), error
    assert "pip install -e '.[tfds]'" in error and str(tmp_path / "tfds") in error
    # TFDS got as far as the download (which the proxy refuses): its install is whole
    # (tensorflow-datasets 4.9.10 imports importlib_resources there, which etils >= 1.15
    # no longer brings).
    assert "(TFDS failed: ProxyError: " in error, error
    if name == "mnist":  # a set with a local reader: where to put the copy
        assert f"put a copy in {tmp_path / 'no_copies' / 'mnist'}" in error


TINY_RUNS = {
    "cifar10": ("fashion_cnn_tiny", "--config.data.name=cifar10"),
    "tiny_shakespeare": ("shakespeare_lstm_tiny",),
    "imdb_reviews": (
        "polarity_han_tiny",
        "--config.data.name=imdb_reviews",
        "--config.data.train_split=train",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TINY_RUNS))
def test_a_tiny_run_trains_on_tfds_through_the_launcher(tmp_path, name):
    experiment, *overrides = TINY_RUNS[name]
    workdir = tmp_path / "run"
    result = run_script(
        "tests/data/mock_tfds_launch.py",
        "2000" if name == "tiny_shakespeare" else "64",  # examples per split
        str(ROOT / "launch/train.py"),
        f"--config={ROOT}/experiments/{experiment}.py",
        f"--workdir={workdir}",
        *([] if name == "imdb_reviews" else ["--config.data.source=tfds"]),  # (TFDS only)
        "--config.train.plot=False",
        *overrides,
        env={**OFFLINE, "TFDS_DATA_DIR": str(tmp_path)},
    )
    assert_ok(result)
    rows = read_metrics(workdir)
    losses = [row["train/loss"] for row in rows if "train/loss" in row]
    assert losses and np.isfinite(losses).all()
    assert any(key.startswith("eval/") for row in rows for key in row)


@pytest.mark.parametrize("name", ["imagenette", "oxford_flowers102"])
def test_a_tfds_image_set_of_any_size_streams_fitted_images(mock_tfds, name):
    """Their images differ in size (np.stack could not hold them): each is fitted."""
    config = configs.section(
        "data", "tfds", tfds_name=name, image_size=24, batch_size=8, eval_batch_size=8, hold_mb=0
    )
    inputs = data.build_input(config, seed=0)
    assert inputs.info["image_shape"] == [24, 24, 3]
    assert (inputs.info["num_train"], inputs.info["num_eval"]) == (40, 40)
    assert len(inputs.info["class_names"]) == {"imagenette": 10, "oxford_flowers102": 102}[name]
    batch = inputs.train.batch(0)
    assert batch["image"].shape == (8, 24, 24, 3) and batch["image"].dtype == np.uint8
    again = data.build_input(config, seed=0).train.batch(0)
    np.testing.assert_array_equal(batch["image"], again["image"])
    sizes = {inputs.train.source._examples()[i]["image"].shape for i in range(8)}
    assert len(sizes) > 1  # the stored images really differ in size
