"""The document classification task: word dropout, learning the label word and
attending to it, the weight average, the PPMI start, config errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import configs, tasks
from jaxdl.data.word_vectors import ppmi_svd_vectors
from jaxdl.errors import ConfigError
from jaxdl.models import han
from jaxdl.tasks.base import AveragedTrainState, TrainState
from jaxdl.tasks.classify_documents import DocumentClassifyTask, word_dropout
from tests.conftest import init_state, jit_quick
from tests.models.test_han import TOKENS

INFO = {"class_names": ["neg", "pos"], "words": ["<pad>", "<unk>", *"abcdefgh"]}


def test_word_dropout_replaces_only_real_words_with_oov():
    tokens = jnp.asarray(np.tile(TOKENS, (50, 1, 1)))
    np.testing.assert_array_equal(word_dropout(jax.random.PRNGKey(0), tokens, 0.0), tokens)
    dropped = np.asarray(word_dropout(jax.random.PRNGKey(0), tokens, 0.5))
    real = np.asarray(tokens) > 0
    np.testing.assert_array_equal(dropped[~real], 0)
    changed = dropped[real] != np.asarray(tokens)[real]
    assert np.all(dropped[real][changed] == han.OOV_ID)
    assert 0.4 < changed.mean() < 0.6


def han_config(**model):
    config = configs.base_config(model="han", task="classify_documents")
    config.task.update(word_dropout=0.1, embed_init="random")
    config.model.update(embed=6, hidden=5, attention=7, dropout=0.1, **model)
    config.optimizer.update(name="adam", learning_rate=1e-2)
    return config


def test_task_learns_the_label_word_and_attends_to_it():
    config = han_config()
    config.optimizer.update(schedule="constant", learning_rate=3e-2, warmup_fraction=0.0)
    task = tasks.build(config, INFO, total_steps=80)
    assert isinstance(task, DocumentClassifyTask)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 16).astype(np.int32)
    tokens = rng.integers(4, 10, (16, 3, 4)).astype(np.int32)
    tokens[:, :, 3] = 0
    tokens[:, 1, 0] = np.where(labels == 1, 2, 3)  # the label's word in sentence 2
    batch = {"tokens": jnp.asarray(tokens), "label": jnp.asarray(labels)}
    state = init_state(task, batch)
    step = jit_quick(task.train_step)
    for _ in range(80):
        state, _ = step(state, batch)
    assert int(state.step) == 80
    eval_batch = {**batch, "mask": jnp.ones(16, bool)}
    result = jit_quick(task.eval_step)(state, eval_batch)
    assert result["accuracy"].compute() == 1.0
    assert result["loss"].compute() < 0.1
    probabilities, words, sentences = jit_quick(task.predict)(state, batch["tokens"])
    np.testing.assert_allclose(np.sum(probabilities, -1), 1.0, rtol=1e-6)
    # The word that decides the label draws most of its sentence's attention, and its
    # sentence most of the document's.
    assert np.mean(np.argmax(words[:, 1], -1) == 0) > 0.8
    assert np.mean(np.asarray(sentences)[:, 1]) > 0.4  # uniform would be 1/3


def test_weight_average_follows_each_step_and_is_what_eval_and_predict_use():
    config = han_config()
    config.task.ema = 0.9
    task = tasks.build(config, INFO, total_steps=10)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 10, (8, 3, 4)).astype(np.int32)
    batch = {"tokens": jnp.asarray(tokens), "label": jnp.asarray(rng.integers(0, 2, 8))}
    state = init_state(task, batch)
    assert isinstance(state, AveragedTrainState)
    chex.assert_trees_all_equal(state.ema_params, state.params)
    step = jit_quick(task.train_step)
    averaged = state.params
    for t in range(3):  # decay min(0.9, (1 + t) / (10 + t)): 0.1, 2/11, 0.25
        state, _ = step(state, batch)
        rate = min(0.9, (1 + t) / (10 + t))
        averaged = jax.tree.map(lambda a, p, r=rate: r * a + (1 - r) * p, averaged, state.params)
    chex.assert_trees_all_close(state.ema_params, averaged, rtol=1e-5, atol=1e-7)

    eval_batch = {**batch, "mask": jnp.ones(8, bool)}
    swapped = state.replace(params=state.ema_params)  # its average as its weights too
    evaluate, predict = jit_quick(task.eval_step), jit_quick(task.predict)
    for name, value in evaluate(state, eval_batch).items():
        assert value.compute() == evaluate(swapped, eval_batch)[name].compute()
    chex.assert_trees_all_equal(predict(state, batch["tokens"]), predict(swapped, tokens))
    plain = jax.eval_shape(tasks.build(han_config(), INFO, 10).init, jax.random.PRNGKey(0), batch)
    assert type(plain) is TrainState  # the checkpoint structure of runs without an average
    with pytest.raises(ConfigError, match=r"task\.ema"):
        config.task.ema = 1.0
        tasks.build(config, INFO, total_steps=10)


def test_ppmi_start_replaces_only_the_word_rows_of_the_embedding():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 10, (20, 3, 4)).astype(np.int32)
    batch = {"tokens": jnp.asarray(tokens), "label": jnp.zeros(20, jnp.int32)}
    config = han_config()
    random_task = tasks.build(config, INFO, total_steps=10)
    state = init_state(random_task, batch)
    assert random_task.init_from_data(state, {"tokens": tokens}) is state

    config.task.embed_init = "ppmi"
    task = tasks.build(config, INFO, total_steps=10)
    started = task.init_from_data(state, {"tokens": tokens})
    before = np.asarray(state.params["encoder"]["embedding"]["embedding"])
    after = np.asarray(started.params["encoder"]["embedding"]["embedding"])
    np.testing.assert_array_equal(after[:2], before[:2])  # padding and OOV stay random
    vectors = ppmi_svd_vectors(tokens, 10, 6, window=5)
    scale = after[2:] / vectors[2:]
    np.testing.assert_allclose(scale, scale.flat[0], rtol=1e-4)  # the vectors, rescaled
    np.testing.assert_allclose(after.std(), before.std(), rtol=0.3)
    for path, leaf in jax.tree_util.tree_leaves_with_path(started.params):
        if "embedding" not in jax.tree_util.keystr(path):
            old = state.params
            for key in path:
                old = old[key.key]
            np.testing.assert_array_equal(leaf, old)
    config.task.ema = 0.9  # a weight average starts from the new embedding too
    averaged = tasks.build(config, INFO, total_steps=10)
    state = init_state(averaged, batch)
    chex.assert_trees_all_equal(
        averaged.init_from_data(state, {"tokens": tokens}).ema_params,
        averaged.init_from_data(state, {"tokens": tokens}).params,
    )
    with pytest.raises(ConfigError, match=r"task\.embed_init"):
        config.task.embed_init = "glove"
        tasks.build(config, INFO, total_steps=10)


def test_bad_han_configs_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"model\.cell"):
        tasks.build(han_config(**{"cell": "rnn"}), INFO, 10)
    config = han_config()
    configs.switch(config, "task", "classify")
    with pytest.raises(ConfigError, match=r"trains classifier models .*'han' is a document_cl"):
        tasks.build(config, INFO, 10)
    with pytest.raises(ConfigError, match="needs a data set with words"):
        tasks.build(han_config(), {"class_names": ["a", "b"]}, 10)


def test_the_tiny_experiment_is_polarity_han_with_only_its_sizes_and_steps_changed():
    # What the end-to-end tests train stands for the real recipe: the same task, model,
    # source, optimizer and schedule; smaller batches, documents, layers and run.
    from experiments import polarity_han, polarity_han_tiny

    full, tiny = (configs.resolve(e.get_config()) for e in (polarity_han, polarity_han_tiny))
    changed = {
        f"{section}.{key}"
        for section in ("data", "task", "model", "optimizer", "train", "sweep")
        for key, value in tiny[section].items()
        if full[section][key] != value
    }
    assert changed == {
        "data.batch_size",
        "data.eval_batch_size",
        "data.max_sentences",
        "data.max_words",
        "data.min_count",
        "model.embed",
        "model.hidden",
        "model.attention",
        "train.num_epochs",
        "train.num_steps",
        "train.log_every",
        "train.eval_every",
        "train.checkpoint_every",
    }
    assert tiny.seed == full.seed and tiny.data.name == "review_polarity"
    task = tasks.build(tiny, INFO, 6)
    assert isinstance(task, DocumentClassifyTask)
    batch = {"tokens": jnp.zeros((8, 5, 6), jnp.int32), "label": jnp.zeros(8, jnp.int32)}
    state = jax.eval_shape(task.init, jax.random.PRNGKey(0), batch)
    params = state.params
    assert params["encoder"]["embedding"]["embedding"].shape == (len(INFO["words"]), 8)  # embed
    assert params["encoder"]["word_encoder"]["forward"]["w_h"].shape == (6, 18)  # GRU: 3 x 6
    assert params["head"]["kernel"].shape == (12, 2)  # both directions, 2 classes
