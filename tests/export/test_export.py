"""launch/export.py on real tiny runs: the StableHLO program and its weights reloaded in a
fresh process with jax and numpy alone (same outputs as the run's task, batch symbolic),
the generator's ONNX graph run by onnxruntime, and one-line errors."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import experiments.fashion_cgan_tiny as tiny
from jaxdl import tasks
from jaxdl.errors import UserError
from jaxdl.export import onnx_gan, stablehlo
from jaxdl.serve import draw_noise
from jaxdl.train.run_info import load_run
from tests.conftest import ROOT, init_state, jit_quick, run_launcher, run_script, shared_run

# Imports only jax and numpy, calls the exported folder on the inputs in inputs.npz (in
# their order) for each batch size, saves the outputs and prints which of the other
# packages got imported (none may be).
RELOAD = """
import json, sys
import jax, numpy as np
folder, data = sys.argv[1], np.load(sys.argv[2])
exported = jax.export.deserialize(bytearray(open(folder + "/model.stablehlo", "rb").read()))
weights = np.load(folder + "/weights.npz")
weights = [weights[name] for name in sorted(weights.files)]
outputs = {}
for n in json.loads(sys.argv[3]):
    inputs = [data[name][:n] for name in data.files]
    outputs[str(n)] = np.asarray(exported.call(weights, *inputs))
np.savez(sys.argv[4], **outputs)
loaded = sorted(m.split(".")[0] for m in sys.modules if m.split(".")[0] in
                ("jaxdl", "flax", "optax", "orbax", "onnx", "onnxruntime", "tensorflow"))
print(json.dumps(loaded))
"""


@pytest.fixture(scope="session")
def tiny_cnn_run(synthetic_data_dir, tmp_path_factory):
    """A finished 20-step run of experiments/fashion_cnn_tiny.py (batch norm)."""
    return shared_run(
        tmp_path_factory,
        "tiny_cnn",
        lambda workdir: run_launcher(
            f"--config={ROOT}/experiments/fashion_cnn_tiny.py",
            f"--workdir={workdir}",
            f"--config.data.data_dir={synthetic_data_dir}",
        ),
    )


def export(*args: str):
    return run_script("launch/export.py", *args, timeout=300)


def reload_in_fresh_process(folder, inputs: dict, batches: list[int], tmp_path) -> dict:
    """{batch size: output} of the exported folder, called in a new python process."""
    np.savez(tmp_path / "inputs.npz", **inputs)
    result = subprocess.run(
        [sys.executable, "-c", RELOAD, str(folder), str(tmp_path / "inputs.npz"),
         json.dumps(batches), str(tmp_path / "outputs.npz")],
        capture_output=True, text=True, timeout=300, env={"JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == []  # nothing but jax and numpy
    with np.load(tmp_path / "outputs.npz") as outputs:
        return {int(n): outputs[n] for n in outputs.files}


@pytest.mark.slow
def test_classifier_exports_probabilities_callable_without_jaxdl(tiny_cnn_run, tmp_path):
    workdir, trained = tiny_cnn_run
    assert trained.returncode == 0, trained.stderr[-3000:]
    out = tmp_path / "cnn"
    result = export(f"--workdir={workdir}", f"--out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "classifier's StableHLO, batch b" in result.stdout
    record = json.loads((out / "export.json").read_text())
    assert record["inputs"] == [{"name": "images", "shape": ["b", 28, 28, 1], "dtype": "uint8"}]
    assert record["run"]["step"] == 20 and len(record["class_names"]) == 10
    assert record["platforms"] == ["cpu", "cuda", "tpu"]  # lowered for all, runs on any
    # Only what the function reads: parameters and batch statistics, no optimizer state.
    assert all(name.startswith((".params", ".model_state")) for name in record["weights"].values())
    assert any("batch_stats" in name for name in record["weights"].values())

    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 1)).astype(np.uint8)
    outputs = reload_in_fresh_process(out, {"images": images}, [5, 2], tmp_path)
    _, _, task, state = load_run(workdir)
    expected = np.asarray(jax.jit(lambda s, x: jax.nn.softmax(task.logits(s, x)))(state, images))
    assert outputs[5].shape == (5, 10)
    np.testing.assert_allclose(outputs[5], expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(outputs[2], expected[:2], atol=1e-6, rtol=0)
    assert not np.allclose(expected[0], expected[1])  # the images matter


@pytest.mark.slow
def test_generators_export_images_callable_without_jaxdl(tiny_cgan_run, tiny_vae_run, tmp_path):
    for (workdir, trained), noise_dim, conditional in (
        (tiny_cgan_run, 100, True),
        (tiny_vae_run, 4, False),
    ):
        assert trained.returncode == 0, trained.stderr[-3000:]
        out = tmp_path / workdir.parent.name
        result = export(f"--workdir={workdir}", f"--out={out}")
        assert result.returncode == 0, result.stderr[-3000:]
        record = json.loads((out / "export.json").read_text())
        assert record["kind"] == "generator" and record["conditional"] == conditional
        noise_input = {"name": "noise", "shape": ["b", noise_dim], "dtype": "float32"}
        assert record["inputs"][0] == noise_input
        if conditional:  # the EMA generator only: no discriminator, no optimizer state
            assert all(name.startswith(".ema_params") for name in record["weights"].values())

        distribution = record["noise_distribution"]
        noise = np.stack([draw_noise(seed, noise_dim, distribution) for seed in range(4)])
        labels = np.array([0, 3, 7, 9], np.int32)
        inputs = {"noise": noise, "labels": labels}
        outputs = reload_in_fresh_process(out, inputs, [4, 1], tmp_path)
        _, _, task, state = load_run(workdir)
        expected = np.asarray(jax.jit(task.generate)(state, jnp.asarray(noise), labels))
        assert outputs[4].shape == (4, 28, 28, 1)
        np.testing.assert_allclose(outputs[4], expected, atol=1e-6, rtol=0)
        np.testing.assert_allclose(outputs[1], expected[:1], atol=1e-6, rtol=0)
        assert not np.allclose(expected[0], expected[1])


def test_a_fixed_batch_where_the_function_needs_one():
    """A function that cannot take a symbolic batch (a group size from it, as the
    discriminator's minibatch standard deviation needs) is exported for a batch of one."""

    def fn(state, x):
        n = x.shape[0]
        group = max(d for d in range(1, min(4, n) + 1) if n % d == 0)
        return x * state["w"] + group

    inference = stablehlo.Inference("classifier", fn, (("x", (3,), "float32"),), "y", {})
    state = {"w": jnp.arange(3.0), "unused": jnp.ones(7)}
    exported, weights, names, batch = stablehlo.export(inference, state)
    assert batch == 1 and names == ["['w']"]
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(exported.call(weights, x), [[1.0, 2.0, 3.0]])


def gan_task(conditional: bool, image_shape: tuple, **changes):
    config = tiny.get_config()
    config.model.conditional = conditional
    config.task.aux_classifier = 0.2 if conditional else 0.0
    for key, value in changes.items():
        section, name = key.split(".")
        config[section][name] = value
    info = {"name": "test", "class_names": list("0123456789"), "image_shape": list(image_shape)}
    return tasks.build(config, info, total_steps=20)


@pytest.mark.parametrize(
    ("conditional", "image_shape"), [(True, (28, 28, 1)), (False, (32, 24, 3))]
)
def test_onnx_graph_computes_the_generator(conditional, image_shape):
    """Both generator kinds, a non-square colour picture (the layout's order shows)."""
    import onnxruntime

    task = gan_task(conditional, image_shape)
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.integers(0, 256, (4, *image_shape)).astype(np.uint8),
        "label": np.arange(4, dtype=np.int32),
    }
    state = init_state(task, batch)
    model = onnx_gan.build(task, state.ema_params)
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    noise = rng.uniform(-1, 1, (6, 100)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 9, 9])
    feeds = {"noise": noise, **({"labels": labels} if conditional else {})}
    assert [i.name for i in session.get_inputs()] == list(feeds)
    (images,) = session.run(None, feeds)
    expected = np.asarray(jit_quick(task.generate)(state, noise, labels.astype(np.int32)))
    assert images.shape == (6, *image_shape)
    np.testing.assert_allclose(images, expected, atol=1e-5, rtol=0)


def test_onnx_refuses_what_its_graph_would_not_compute():
    with pytest.raises(UserError, match=r"task\.refine_steps=2: refinement steers the noise"):
        onnx_gan.check_exportable(gan_task(True, (28, 28, 1), **{"task.refine_steps": 2}))
    with pytest.raises(UserError, match="computes in bfloat16"):
        bf16 = gan_task(True, (28, 28, 1), **{"train.compute_dtype": "bfloat16"})
        onnx_gan.check_exportable(bf16)


@pytest.mark.slow
def test_generator_onnx_matches_jax_in_onnxruntime(tiny_cgan_run, tmp_path):
    import onnxruntime

    workdir, _ = tiny_cgan_run
    out = tmp_path / "onnx"
    result = export(f"--workdir={workdir}", f"--out={out}", "--format=onnx")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "export.json").read_text())
    assert [i["name"] for i in record["inputs"]] == ["noise", "labels"]
    session = onnxruntime.InferenceSession(
        str(out / onnx_gan.MODEL_FILE), providers=["CPUExecutionProvider"]
    )
    noise = np.stack([draw_noise(seed, 100, "uniform") for seed in range(10)])
    labels = np.arange(10)
    _, _, task, state = load_run(workdir)
    expected = np.asarray(jax.jit(task.generate)(state, noise, labels.astype(np.int32)))
    for n in (10, 3):  # the batch is symbolic
        (images,) = session.run(None, {"noise": noise[:n], "labels": labels[:n]})
        assert images.shape == (n, 28, 28, 1)
        np.testing.assert_allclose(images, expected[:n], atol=1e-5, rtol=0)
    assert not np.allclose(expected[0], expected[1])


@pytest.mark.slow
def test_bad_flags_and_runs_are_one_line(tiny_vae_run, tmp_path):
    workdir, _ = tiny_vae_run
    cases = [
        ((f"--workdir={tmp_path}", f"--out={tmp_path / 'x'}"),
         f"error: {tmp_path} is not a run directory: no config.json"),
        ((f"--workdir={workdir}", f"--out={tmp_path / 'x'}", "--format=onnx"),
         "error: ONNX export takes a GAN's generator (task gan), not AutoencodeTask's model"),
        ((f"--workdir={workdir}", f"--out={tmp_path / 'x'}", "--platforms=cpu,gpu"),
         "error: --platforms=cpu,gpu: give some of cpu, cuda, rocm, tpu"),
        ((f"--workdir={workdir}", f"--out={tmp_path / 'x'}", "--step=7"),
         f"error: {workdir} has no checkpoint 7 (it has [10, 20])"),
        ((f"--workdir={workdir}", f"--out={tmp_path / 'x'}", "--page", "--format=stablehlo"),
         "error: --page writes ONNX: leave out --format or give --format=onnx"),
    ]  # fmt: skip
    for args, line in cases:
        result = export(*args)
        assert result.returncode == 1, (args, result.stderr[-2000:])
        assert result.stderr.splitlines()[-1] == line
    empty = tmp_path / "no_runtime"
    empty.mkdir()
    result = run_script(
        "launch/export.py", f"--workdir={workdir}", f"--out={tmp_path / 'x'}", "--page",
        env={"JAXDL_ORT_WEB": str(empty)},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"error: no onnxruntime-web 1.31.1 in {empty} (ort.wasm.min.js, "
    ) and result.stderr.splitlines()[-1].endswith(
        "run `make web-runtime` (fetches it from npm) or set $JAXDL_ORT_WEB"
    )
    assert not (tmp_path / "x").exists()
