"""The hierarchical attention network: GRU values, masking (padding gets exactly zero
attention and changes nothing), per-row reference runs, the task, and the HTML view."""

import html
import re

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxdl import attention_view, tasks
from jaxdl.errors import ConfigError
from jaxdl.models import han, lstm
from jaxdl.tasks.base import AveragedTrainState, TrainState
from jaxdl.tasks.classify_documents import DocumentClassifyTask, word_dropout
from jaxdl.word_vectors import ppmi_svd_vectors
from tests.conftest import ROOT


def reference_gru(w_x, w_h, b_x, b_h, xs, h):
    """A plain numpy GRU, one step at a time (reset gate on the recurrent projection)."""
    sigmoid = lambda v: 1 / (1 + np.exp(-v))
    hs = []
    for x in xs:
        zx, zh = x @ w_x + b_x, h @ w_h + b_h
        r_x, u_x, n_x = np.split(zx, 3, axis=-1)
        r_h, u_h, n_h = np.split(zh, 3, axis=-1)
        r, u = sigmoid(r_x + r_h), sigmoid(u_x + u_h)
        h = (1 - u) * np.tanh(n_x + r * n_h) + u * h
        hs.append(h)
    return np.stack(hs, axis=1), h


def test_gru_matches_a_step_by_step_reference():
    layer = lstm.GRU(4)
    xs = jax.random.normal(jax.random.PRNGKey(0), (3, 7, 5))
    h0 = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
    params = jax.jit(layer.init)(jax.random.PRNGKey(2), xs, (h0,))["params"]
    params = jax.tree.map(lambda p: p + 0.1, params)  # non-zero biases
    hs, (h_last,) = jax.jit(layer.apply)({"params": params}, xs, (h0,))
    p = {k: np.asarray(v) for k, v in params.items()}
    ref_hs, ref_h = reference_gru(
        p["w_x"], p["w_h"], p["b_x"], p["b_h"], np.asarray(xs).swapaxes(0, 1), np.asarray(h0)
    )
    np.testing.assert_allclose(hs, ref_hs, atol=1e-5)
    np.testing.assert_allclose(h_last, ref_h, atol=1e-5)


def test_reverse_prefix_reverses_only_the_real_steps():
    xs = jnp.arange(10).reshape(2, 5)
    out = han.reverse_prefix(xs, jnp.array([3, 5]))
    np.testing.assert_array_equal(out, [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]])
    np.testing.assert_array_equal(han.reverse_prefix(out, jnp.array([3, 5])), xs)


def test_masked_softmax_is_exactly_zero_on_padding_and_on_empty_rows():
    scores = jnp.array([[1.0, 2.0, 50.0], [0.5, -1.0, 3.0], [7.0, 7.0, 7.0]])
    mask = jnp.array([[True, True, False], [True, True, True], [False, False, False]])
    weights = np.asarray(han.masked_softmax(scores, mask))
    e = np.exp([1.0, 2.0])
    np.testing.assert_allclose(weights[0, :2], e / e.sum(), rtol=1e-6)
    assert weights[0, 2] == 0.0
    np.testing.assert_allclose(weights[1], jax.nn.softmax(scores[1]), rtol=1e-6)
    np.testing.assert_array_equal(weights[2], 0.0)


# Two documents: 3 and 2 real sentences of 1..4 real words (ids >= 2), 0 = padding.
TOKENS = np.array(
    [
        [[5, 2, 9, 0], [3, 0, 0, 0], [7, 7, 4, 8]],
        [[6, 3, 0, 0], [2, 9, 5, 0], [0, 0, 0, 0]],
    ],
    np.int32,
)


def make_model(cell="gru"):
    return han.HierarchicalAttentionClassifier(
        num_classes=2, vocab_size=10, embed=6, hidden=5, attention=7, cell=cell
    )


@pytest.mark.parametrize("cell", han.CELLS)
def test_attention_is_masked_and_extra_padding_changes_nothing(cell):
    model = make_model(cell)
    params = jax.jit(model.init)(jax.random.PRNGKey(1), TOKENS)["params"]
    padded = np.zeros((2, 6, 9), np.int32)  # 3 more sentences, 5 more words each
    padded[:, :3, :4] = TOKENS
    apply = jax.jit(lambda t: model.apply({"params": params}, t))
    logits, words, sentences = apply(TOKENS)
    chex.assert_shape(logits, (2, 2))
    chex.assert_shape(words, (2, 3, 4))
    chex.assert_shape(sentences, (2, 3))
    real_words, real_sentences = TOKENS > 0, (TOKENS > 0).any(-1)
    np.testing.assert_allclose(np.sum(words, -1)[real_sentences], 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.sum(sentences, -1), 1.0, rtol=1e-6)
    assert np.all(np.asarray(words)[~real_words] == 0.0)
    assert np.all(np.asarray(sentences)[~real_sentences] == 0.0)
    assert np.all(np.asarray(words)[real_words] > 0)

    logits_p, words_p, sentences_p = apply(padded)
    np.testing.assert_allclose(logits_p, logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(words_p[:, :3, :4], words, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sentences_p[:, :3], sentences, rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(words_p)[padded == 0] == 0.0)
    assert np.all(np.asarray(sentences_p)[:, 3:] == 0.0)


def test_bidirectional_layer_equals_separate_unpadded_runs_per_row():
    """The independent reference: each row alone, without padding, backward = the layer
    over the reversed real steps."""
    xs = jax.random.normal(jax.random.PRNGKey(3), (3, 6, 4))
    lengths = jnp.array([6, 2, 4])
    layer = han.BidirectionalRecurrent(5)
    params = layer.init(jax.random.PRNGKey(4), xs, lengths)["params"]
    out = layer.apply({"params": params}, xs, lengths)
    gru = lstm.GRU(5)
    for row, length in enumerate(lengths.tolist()):
        real = xs[row : row + 1, :length]
        forward, _ = gru.apply({"params": params["forward"]}, real, gru.initial_carry(1))
        backward, _ = gru.apply({"params": params["backward"]}, real[:, ::-1], gru.initial_carry(1))
        np.testing.assert_allclose(out[row, :length, :5], forward[0], atol=1e-6)
        np.testing.assert_allclose(out[row, :length, 5:], backward[0, ::-1], atol=1e-6)


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
    config = ml_collections.ConfigDict()
    config.task = dict(name="classify_documents", label_smoothing=0.0, word_dropout=0.1)
    config.model = dict(name="han", embed=6, hidden=5, attention=7, cell="gru", dropout=0.1)
    config.model.update(model)
    from jaxdl.optim import default_config

    config.optimizer = default_config()
    config.optimizer.update(name="adam", learning_rate=1e-2)
    return config


INFO = {"class_names": ["neg", "pos"], "words": ["<pad>", "<unk>", *"abcdefgh"]}


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
    state = jax.jit(task.init)(jax.random.PRNGKey(0), batch)
    step = jax.jit(task.train_step)
    for _ in range(80):
        state, _ = step(state, batch)
    assert int(state.step) == 80
    eval_batch = {**batch, "mask": jnp.ones(16, bool)}
    result = jax.jit(task.eval_step)(state, eval_batch)
    assert result["accuracy"].compute() == 1.0
    assert result["loss"].compute() < 0.1
    probabilities, words, sentences = jax.jit(task.predict)(state, batch["tokens"])
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
    state = jax.jit(task.init)(jax.random.PRNGKey(0), batch)
    assert isinstance(state, AveragedTrainState)
    chex.assert_trees_all_equal(state.ema_params, state.params)
    step = jax.jit(task.train_step)
    averaged = state.params
    for t in range(3):  # decay min(0.9, (1 + t) / (10 + t)): 0.1, 2/11, 0.25
        state, _ = step(state, batch)
        rate = min(0.9, (1 + t) / (10 + t))
        averaged = jax.tree.map(lambda a, p, r=rate: r * a + (1 - r) * p, averaged, state.params)
    chex.assert_trees_all_close(state.ema_params, averaged, rtol=1e-5, atol=1e-7)

    eval_batch = {**batch, "mask": jnp.ones(8, bool)}
    swapped = TrainState(  # no average: its average as its weights
        state.step, state.ema_params, state.opt_state, state.rng, state.model_state
    )
    for name, value in jax.jit(task.eval_step)(state, eval_batch).items():
        assert value.compute() == jax.jit(task.eval_step)(swapped, eval_batch)[name].compute()
    chex.assert_trees_all_equal(
        jax.jit(task.predict)(state, batch["tokens"]), jax.jit(task.predict)(swapped, tokens)
    )
    plain = tasks.build(han_config(), INFO, 10).init(jax.random.PRNGKey(0), batch)
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
    state = jax.jit(random_task.init)(jax.random.PRNGKey(0), batch)
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
    state = averaged.init(jax.random.PRNGKey(0), batch)
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
    config.task.name = "classify"
    with pytest.raises(ConfigError, match="do not go together"):
        tasks.build(config, INFO, 10)
    with pytest.raises(ConfigError, match="needs a data set with words"):
        tasks.build(han_config(), {"class_names": ["a", "b"]}, 10)


def test_html_page_holds_every_word_with_its_weight_escaped():
    sentences = [["a", "<b>", "film"], ["great", '"fun"', "&", "cut"], ["not", "read"]]
    word_attention = np.array([[0.2, 0.5, 0.3], [0.1, 0.6, 0.3]])
    sentence_attention = np.array([0.25, 0.75])
    page = attention_view.document_page(
        "cv000_1", sentences, word_attention, sentence_attention, ["neg", "pos"], 1, [0.1, 0.9]
    )
    read = re.findall(r'<span class="word" data-weight="([0-9.]+)"[^>]*>([^<]*)</span>', page)
    assert [html.unescape(w) for _, w in read] == ["a", "<b>", "film", "great", '"fun"', "&"]
    np.testing.assert_allclose([float(v) for v, _ in read], [0.2, 0.5, 0.3, 0.1, 0.6, 0.3])
    cut = re.findall(r'<span class="word cut"[^>]*>([^<]*)</span>', page)
    assert cut == ["cut", "not", "read"]  # past the 3 words / 2 sentences the model read
    sentence_weights = re.findall(r'<div class="sentence" data-weight="([0-9.]+)"', page)
    np.testing.assert_allclose([float(v) for v in sentence_weights], [0.25, 0.75, 0.0])
    assert "<b>" not in page.replace("<b>pos</b>", "").replace("<b>pos</b>", "")
    assert "predicted <b>pos</b> with probability 0.900" in page
    index = attention_view.index_page(
        "run <x>",
        [
            {
                "name": "cv000_1",
                "href": "cv000_1.html",
                "label": "pos",
                "predicted": "pos",
                "probability": 0.9,
            }
        ],
    )
    assert '<a href="cv000_1.html">cv000_1</a>' in index and "run &lt;x&gt;" in index


def test_html_page_of_the_last_sentences_read_greys_the_first():
    sentences = [["skipped", "intro"], ["so", "good"], ["loved", "it"]]
    page = attention_view.document_page(
        "cv000_1",
        sentences,
        np.array([[0.4, 0.6], [0.9, 0.1]]),
        np.array([0.3, 0.7]),
        ["neg", "pos"],
        1,
        [0.2, 0.8],
        first_read=1,
    )
    read = re.findall(r'<span class="word" data-weight="([0-9.]+)"[^>]*>([^<]*)</span>', page)
    assert [w for _, w in read] == ["so", "good", "loved", "it"]
    np.testing.assert_allclose([float(v) for v, _ in read], [0.4, 0.6, 0.9, 0.1])
    assert re.findall(r'<span class="word cut"[^>]*>([^<]*)</span>', page) == ["skipped", "intro"]
    sentence_weights = re.findall(r'<div class="sentence" data-weight="([0-9.]+)"', page)
    np.testing.assert_allclose([float(v) for v in sentence_weights], [0.0, 0.3, 0.7])


def test_tiny_experiment_builds():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "tiny", ROOT / "experiments" / "polarity_han_tiny.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    task = tasks.build(config, INFO, 6)
    assert isinstance(task.optimizer, optax.GradientTransformation)
