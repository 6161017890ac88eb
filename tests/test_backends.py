"""Settings left to the backend: the choice per backend name, what tasks.build makes of
it, that either choice holds the same parameters, and that old runs keep theirs."""

import json
import logging

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import experiments.fashion_cnn_tiny as tiny
from jaxdl import backends, configs, tasks
from jaxdl.models import cnn
from jaxdl.train import run_info
from tests.conftest import make_images

INFO = {"class_names": list("0123456789"), "image_shape": [28, 28, 1]}


@pytest.mark.parametrize(
    "backend,impl", [("cpu", "matmul"), ("gpu", "xla"), ("cuda", "xla"), ("tpu", "xla")]
)
def test_auto_conv_impl_per_backend_name(backend, impl):
    assert backends.conv_impl("auto", backend) == impl
    for explicit in cnn.CONV_IMPLS:  # a setting that names one stays it everywhere
        assert backends.conv_impl(explicit, backend) == explicit


@pytest.mark.parametrize("backend,chunk", [("cpu", 1), ("gpu", 8), ("tpu", 8)])
def test_vmap_chunk_per_backend_name(backend, chunk):
    assert backends.vmap_chunk(0, backend, 8) == chunk
    assert backends.vmap_chunk(3, backend, 8) == 3
    assert backends.vmap_chunk(16, backend, 8) == 8


@pytest.mark.parametrize("model", ["cnn", "autoencoder"])
def test_the_default_is_auto_and_resolves_per_backend(model):
    config = configs.resolve(configs.base_config(model=model))
    assert config.model.conv_impl == "auto"
    assert backends.resolve(config, "cpu").model.conv_impl == "matmul"
    assert backends.resolve(config, "gpu").model.conv_impl == "xla"
    assert config.model.conv_impl == "auto"  # a copy: the run's config keeps "auto"
    assert backends.picked(config, "gpu") == {"model.conv_impl": "xla"}


def test_explicit_settings_and_models_without_the_key_are_left_alone():
    gan = configs.resolve(configs.base_config(model="dcgan", task="gan"))
    assert gan.model.conv_impl == "xla"  # the GAN's default is no "auto"
    assert backends.resolve(gan, "cpu").model.conv_impl == "xla"
    assert backends.picked(gan, "cpu") == {}
    mlp = configs.resolve(configs.base_config(model="mlp"))
    assert backends.resolve(mlp, "gpu") is mlp and backends.picked(mlp, "gpu") == {}


@pytest.mark.parametrize("model", ["cnn", "autoencoder"])
def test_an_old_run_keeps_matmul_on_every_backend(model):
    """A saved config resolves as trained: without the key (written before it existed)
    it takes the legacy 'matmul', not the new default "auto"; with it, it keeps it."""
    saved = configs.resolve(configs.base_config(model=model)).to_dict()
    del saved["model"]["conv_impl"]
    old = configs.resolve(ml_collections.ConfigDict(saved), saved=True)
    assert old.model.conv_impl == "matmul"
    for backend in ("cpu", "gpu"):
        assert backends.resolve(old, backend).model.conv_impl == "matmul"
    assert configs.resolve(ml_collections.ConfigDict(saved)).model.conv_impl == "auto"


def _tiny(backend: str, conv_impl: str = "auto"):
    config = tiny.get_config()
    config.model.conv_impl = conv_impl
    return tasks.build(config, INFO, total_steps=10, backend=backend)


def _convolutions(task, state, images) -> int:
    jaxpr = jax.make_jaxpr(task.logits)(state, images)
    return str(jaxpr).count("conv_general_dilated")


def test_tasks_build_for_a_backend_and_its_checkpoints_fit_the_others():
    """A run trained on CPU ("auto" -> matmul) restored where "auto" is XLA's convolution
    (a GPU): the same parameter tree, the same logits; only the kernel differs."""
    images, _ = make_images(8, seed=0)
    images = jnp.asarray(images[..., None])
    on_cpu, on_gpu = _tiny("cpu"), _tiny("gpu")
    batch = {"image": images, "label": jnp.zeros(8, jnp.int32)}
    state = on_cpu.init(jax.random.PRNGKey(0), batch)
    assert jax.tree.structure(state) == jax.tree.structure(
        on_gpu.init(jax.random.PRNGKey(0), batch)
    )
    assert _convolutions(on_cpu, state, images) == 0
    assert _convolutions(on_gpu, state, images) > 0  # built here, it runs on this CPU too
    np.testing.assert_allclose(
        on_gpu.logits(state, images), on_cpu.logits(state, images), rtol=1e-4, atol=1e-4
    )
    assert _convolutions(_tiny("gpu", conv_impl="matmul"), state, images) == 0


def test_an_unresolved_auto_never_reaches_a_convolution():
    x = jnp.zeros((1, 4, 4, 2))
    with pytest.raises(ValueError, match="impl='auto'"):
        cnn.Conv(3, impl="auto").init(jax.random.PRNGKey(0), x)


def _backend(name: str, impl: str) -> dict:
    return {"name": name, "device_kind": name, "auto": {"model.conv_impl": impl}}


def test_run_json_keeps_the_backends_a_resumed_run_trained_on(tmp_path, caplog):
    spec = {"image": jax.ShapeDtypeStruct((4, 28, 28, 1), jnp.uint8)}
    cpu, gpu = _backend("cpu", "matmul"), _backend("gpu", "xla")
    assert run_info.write_run_info(tmp_path, INFO, spec, 10, cpu) == []
    assert run_info.write_run_info(tmp_path, INFO, spec, 10, cpu) == []  # same backend
    with caplog.at_level(logging.INFO):
        earlier = run_info.write_run_info(tmp_path, INFO, spec, 10, gpu)
        run_info.log_backend(gpu, earlier)
    record = json.loads((tmp_path / run_info.RUN_INFO_FILE).read_text())
    assert record["backend"] == gpu and record["earlier_backends"] == [cpu]
    assert "backend gpu (gpu): model.conv_impl=auto -> xla" in caplog.text
    assert "trained on cpu with {'model.conv_impl': 'matmul'} before" in caplog.text
    run_info.write_run_info(tmp_path, INFO, spec, 10, cpu)  # back: the list stays short
    record = json.loads((tmp_path / run_info.RUN_INFO_FILE).read_text())
    assert record["earlier_backends"] == [gpu]
