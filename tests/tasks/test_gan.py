"""GAN: model shapes, losses against hand computation, each network changed only by its
own optimizer, EMA, refinement, autoencoder pre-training, a tiny run with resume."""

import math
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import experiments.fashion_cgan_tiny as tiny
from jaxdl import tasks
from jaxdl.errors import UserError
from jaxdl.tasks.base import ema_decay
from jaxdl.tasks.gan import GANTask, d_loss_terms, g_loss_terms
from jaxdl.train import read_metrics
from tests.conftest import init_state, jit_quick, make_images, tiny_cgan_args
from tests.train.test_train_e2e import keep_checkpoints_up_to, saved_state

INFO = {"name": "test", "class_names": list("0123456789"), "image_shape": [28, 28, 1]}


def tiny_task(conditional=True, **task_overrides):
    config = tiny.get_config()
    config.model.conditional = conditional
    config.task.aux_classifier = 0.2 if conditional else 0.0  # the head needs labels
    config.task.update(task_overrides)
    return tasks.build(config, INFO, total_steps=20)


def image_batch(n=16, seed=0):
    images, labels = make_images(n, seed)
    return {"image": jnp.asarray(images[..., None]), "label": jnp.asarray(labels, jnp.int32)}


@pytest.mark.parametrize("conditional", [True, False])
def test_shapes_and_ranges(conditional):
    task = tiny_task(conditional)
    state = init_state(task, image_batch())
    noise = task.sample_noise(jax.random.PRNGKey(1), 5)
    labels = jnp.arange(5, dtype=jnp.int32)
    generate = jit_quick(task.generate)  # (compiled: op-by-op convolutions are slow)
    images = generate(state, noise, labels)
    assert images.shape == (5, 28, 28, 1) and images.dtype == jnp.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert task.score(state.d_params, images * 2 - 1, labels).shape == (5,)
    assert task.conditional == conditional and task.noise_dim == 100
    # The label changes a conditional sample and nothing else.
    other = generate(state, noise, (labels + 1) % 10)
    assert bool(jnp.any(other != images)) == conditional
    grid = jit_quick(task.images)(state, image_batch())["samples"]
    assert grid.shape == (10 * 29, 10 * 29) and grid.dtype == jnp.uint8


@pytest.mark.parametrize("group", [0, 2])
def test_minibatch_std_lets_a_score_depend_only_on_its_group(group):
    config = tiny.get_config()
    config.model.d_minibatch_std = group
    task = tasks.build(config, INFO, total_steps=20)
    batch = image_batch(8)
    state = init_state(task, batch)
    images = batch["image"].astype(jnp.float32) / 127.5 - 1
    score = lambda x: np.asarray(task.score(state.d_params, x, batch["label"]))
    base = score(images)
    same_group = score(images.at[4].set(-images[4]))  # image 0's group: {0, 4}
    other_group = score(images.at[1].set(-images[1]))
    assert np.array_equal(other_group[0], base[0])
    assert (same_group[0] != base[0]) == (group > 0)


def test_noise_distributions():
    key = jax.random.PRNGKey(0)
    uniform = tiny_task().sample_noise(key, 4000)
    assert uniform.shape == (4000, 100)
    assert -1.0 <= float(uniform.min()) < -0.99 and 0.99 < float(uniform.max()) <= 1.0
    np.testing.assert_allclose(float(uniform.var()), 1 / 3, rtol=0.02)
    normal = tiny_task(noise_distribution="normal").sample_noise(key, 4000)
    np.testing.assert_allclose(float(normal.std()), 1.0, rtol=0.02)


def test_losses_match_hand_computation():
    real, fake = jnp.array([2.0, 0.5]), jnp.array([-1.0, -0.3])
    sp = lambda x: math.log1p(math.exp(x))
    np.testing.assert_allclose(
        d_loss_terms("non_saturating", real, fake), [sp(-2.0) + sp(-1.0), sp(-0.5) + sp(-0.3)]
    )
    np.testing.assert_allclose(d_loss_terms("hinge", real, fake), [0.0, 0.5 + 0.7], rtol=1e-6)
    np.testing.assert_allclose(g_loss_terms("non_saturating", fake), [sp(1.0), sp(0.3)])
    np.testing.assert_allclose(g_loss_terms("hinge", fake), [1.0, 0.3])


def test_r1_is_the_squared_input_gradient_of_d():
    task = tiny_task(r1_gamma=2.0, aux_classifier=0.0)
    batch = image_batch(4)
    state = init_state(task, batch)
    real = batch["image"].astype(jnp.float32) / 127.5 - 1.0
    fake = -real
    loss, aux = jit_quick(task.d_loss)(state.d_params, real, batch["label"], fake, batch["label"])
    one = lambda x, label: task.score(state.d_params, x[None], label[None])[0]
    grad = jit_quick(jax.grad(one))
    grads = [grad(real[i], batch["label"][i]) for i in range(4)]
    r1 = np.mean([float((g**2).sum()) for g in grads])
    np.testing.assert_allclose(float(aux["r1"]), r1, rtol=1e-4)
    np.testing.assert_allclose(float(loss), float(aux["d_loss"]) + 1.0 * r1, rtol=1e-5)


def test_mode_seeking_adds_the_inverse_image_to_noise_distance_ratio():
    plain, seeking = tiny_task(aux_classifier=0.0), tiny_task(aux_classifier=0.0, mode_seeking=2.0)
    state = init_state(plain, image_batch(8))
    noise = plain.sample_noise(jax.random.PRNGKey(1), 8)
    labels = jnp.tile(jnp.arange(4, dtype=jnp.int32), 2)  # pairs (i, i + 4) share a label
    adversarial, aux = plain.g_loss(state.g_params, state.d_params, noise, labels)
    loss, seeking_aux = seeking.g_loss(state.g_params, state.d_params, noise, labels)
    images = np.asarray(plain.fake(state.g_params, noise, labels), np.float64)
    z = np.asarray(noise, np.float64)
    ratio = np.abs(images[:4] - images[4:]).mean((1, 2, 3)) / np.abs(z[:4] - z[4:]).mean(1)
    np.testing.assert_allclose(seeking_aux["mode_ratio"], ratio.mean(), rtol=1e-5)
    np.testing.assert_allclose(seeking_aux["g_loss"], adversarial, rtol=1e-6)
    np.testing.assert_allclose(loss, adversarial + 2.0 * np.mean(1 / (ratio + 1e-5)), rtol=1e-5)
    assert "mode_ratio" not in aux
    _, metrics = jit_quick(seeking.train_step)(state, image_batch(8))
    assert metrics["mode_ratio"] > 0


def test_aux_classifier_adds_the_class_heads_cross_entropy_to_both_losses():
    plain = tiny_task(r1_gamma=0.0, aux_classifier=0.0)
    classifying = tiny_task(r1_gamma=0.0, aux_classifier=0.5)
    batch = image_batch(8)
    state = init_state(classifying, batch)
    real = batch["image"].astype(jnp.float32) / 127.5 - 1.0
    labels = batch["label"]
    fake = classifying.fake(state.g_params, plain.sample_noise(jax.random.PRNGKey(1), 8), labels)

    def cross_entropy(images):  # by hand from the class head's logits
        _, logits = classifying.score_and_classes(state.d_params, images, labels)
        logits = np.asarray(logits, np.float64)
        log_z = np.log(np.exp(logits).sum(-1))
        return np.mean(log_z - logits[np.arange(8), np.asarray(labels)])

    # The head is an extra output: the real-vs-fake score is the plain discriminator's.
    no_head = {k: v for k, v in state.d_params.items() if k != "Dense_2"}
    np.testing.assert_array_equal(
        classifying.score(state.d_params, real, labels), plain.score(no_head, real, labels)
    )
    loss, aux = classifying.d_loss(state.d_params, real, labels, fake, labels)
    plain_loss, _ = plain.d_loss(no_head, real, labels, fake, labels)
    np.testing.assert_allclose(aux["d_class_loss"], cross_entropy(real), rtol=1e-5)
    np.testing.assert_allclose(loss, plain_loss + 0.5 * cross_entropy(real), rtol=1e-5)

    noise = plain.sample_noise(jax.random.PRNGKey(1), 8)
    loss, aux = classifying.g_loss(state.g_params, state.d_params, noise, labels)
    plain_loss, plain_aux = plain.g_loss(state.g_params, no_head, noise, labels)
    np.testing.assert_allclose(aux["g_class_loss"], cross_entropy(fake), rtol=1e-5)
    np.testing.assert_allclose(loss, plain_loss + 0.5 * cross_entropy(fake), rtol=1e-5)
    assert "g_class_loss" not in plain_aux


def test_ema_decay_ramps_up():
    assert float(ema_decay(0.999, jnp.array(0))) == pytest.approx(0.1)
    assert float(ema_decay(0.999, jnp.array(10**6))) == pytest.approx(0.999)


def _with_optimizers(task: GANTask, g_optimizer, d_optimizer) -> GANTask:
    return GANTask(
        generator=task.generator,
        discriminator=task.discriminator,
        g_optimizer=g_optimizer,
        d_optimizer=d_optimizer,
        g_schedule=task.g_schedule,
        d_schedule=task.d_schedule,
        n_disc=2,
        ema=0.0,
    )


@pytest.mark.parametrize("frozen", ["generator", "discriminator"])
def test_each_network_changes_only_by_its_own_step(frozen):
    sgd, zero = optax.sgd(0.1), optax.set_to_zero()
    task = tiny_task()
    task = _with_optimizers(
        task, zero if frozen == "generator" else sgd, zero if frozen == "discriminator" else sgd
    )
    batch = image_batch()
    state = init_state(task, batch)
    new, metrics = jit_quick(task.train_step)(state, batch)
    assert int(new.step) == 1 and set(metrics) >= {"d_loss", "g_loss", "d_real", "d_fake"}
    same, changed = ("g_params", "d_params")[:: 1 if frozen == "generator" else -1]
    chex.assert_trees_all_equal(getattr(new, same), getattr(state, same))
    diffs = jax.tree.leaves(
        jax.tree.map(
            lambda a, b: jnp.abs(a - b).max(), getattr(new, changed), getattr(state, changed)
        )
    )
    assert max(float(d) for d in diffs) > 0
    # With EMA off, samples come from the current generator.
    chex.assert_trees_all_equal(new.ema_params, new.g_params)


def test_refinement_increases_d_on_average():
    task = tiny_task()
    batch = image_batch()
    state = init_state(task, batch)
    step = jit_quick(task.train_step)
    for _ in range(3):
        state, _ = step(state, batch)
    noise = task.sample_noise(jax.random.PRNGKey(5), 64)
    labels = jnp.arange(64, dtype=jnp.int32) % 10
    score = lambda z: task.score(state.d_params, task.fake(state.ema_params, z, labels), labels)
    refined = task.refine(state, noise, labels, steps=3, step_size=0.05)
    assert float(jnp.abs(refined).max()) <= 1.0  # uniform noise stays in its range
    assert float(score(refined).mean()) > float(score(noise).mean())


def test_autoencoder_pretraining_touches_only_encoder_and_generator():
    task = tiny_task(pretrain_steps=2)
    batch = image_batch()
    state = init_state(task, batch)
    pretrained, metrics = jit_quick(task.pretrain_step)(state, batch)
    chex.assert_trees_all_equal(pretrained.d_params, state.d_params)
    chex.assert_trees_all_equal(pretrained.ema_params, pretrained.g_params)
    assert float(metrics["ae_loss"]) > 0 and int(pretrained.step) == 1
    g_changed = jax.tree.map(lambda a, b: bool((a != b).any()), pretrained.g_params, state.g_params)
    assert all(jax.tree.leaves(g_changed))
    adversarial, metrics = jit_quick(task.train_step)(pretrained, batch)
    chex.assert_trees_all_equal(adversarial.enc_params, pretrained.enc_params)
    assert "ae_loss" not in metrics and float(metrics["d_loss"]) > 0
    d_kernel = lambda s: s.d_params["Dense_1"]["kernel"]
    assert float(jnp.abs(d_kernel(adversarial) - d_kernel(pretrained)).max()) > 0


def test_bad_gan_configs_are_one_line_errors():
    with pytest.raises(UserError, match=r"task\.loss"):
        tiny_task(loss="wasserstein")
    with pytest.raises(UserError, match="n_disc"):
        tiny_task(n_disc=3)  # batch 16 does not split in 3
    with pytest.raises(UserError, match="aux_classifier needs a conditional model"):
        tiny_task(conditional=False, aux_classifier=1.0)
    with pytest.raises(UserError, match="needs a data set with labels"):
        config = tiny.get_config()
        tasks.build(config, {"name": "x", "image_shape": [28, 28, 1]}, 10)


@pytest.mark.slow
def test_tiny_cgan_run_writes_grids_and_resumes_exactly(
    launch, synthetic_data_dir, tmp_path, tiny_cgan_run
):
    straight, result = tiny_cgan_run
    assert result.returncode == 0, result.stderr[-3000:]
    pictures = sorted(p.name for p in (straight / "images").iterdir())
    assert pictures == ["samples_0000003.png", "samples_0000006.png"]
    from PIL import Image

    assert Image.open(straight / "images" / "samples_0000006.png").size == (290, 290)
    rows = read_metrics(straight)
    train_rows = [set(row) for row in rows if any(k.startswith("train/") for k in row)]
    assert "train/ae_loss" in train_rows[0] and "train/d_loss" not in train_rows[0]
    assert {"train/d_loss", "train/g_loss", "eval/d_real", "eval/d_fake"} <= set(rows[-1])
    assert "train/ae_loss" not in rows[-1]
    assert (straight / "metrics.png").is_file()

    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    keep_checkpoints_up_to(resumed, 3)
    result = launch(*tiny_cgan_args(synthetic_data_dir), f"--workdir={resumed}")
    assert result.returncode == 0 and "resumed from step 3" in result.stderr, result.stderr[-3000:]
    # Both parameter sets, both optimizer states, the EMA: bit-equal after the resume.
    chex.assert_trees_all_equal(saved_state(straight, 6), saved_state(resumed, 6))
