"""The hierarchical attention network: GRU values, masking (padding gets exactly zero
attention and changes nothing), per-row reference runs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.models import han, lstm


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
