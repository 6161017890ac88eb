import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.models import lstm


def reference_lstm(w_x, w_h, b, xs, h, c):
    """A plain numpy LSTM, one step at a time (independent of jaxdl's scan)."""
    sigmoid = lambda v: 1 / (1 + np.exp(-v))
    hs = []
    for x in xs:
        z = x @ w_x + h @ w_h + b
        i, f, g, o = np.split(z, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        hs.append(h)
    return np.stack(hs), (h, c)


def random_inputs(key, t=7, b=3, d=5, h=4):
    keys = jax.random.split(key, 6)
    shapes = [(d, 4 * h), (h, 4 * h), (4 * h,), (t, b, d), (b, h), (b, h)]
    return [jax.random.normal(k, s) * 0.5 for k, s in zip(keys, shapes, strict=True)]


@pytest.mark.parametrize("backward", ["autodiff", "explicit"])
def test_forward_matches_a_step_by_step_reference(backward):
    inputs = random_inputs(jax.random.PRNGKey(0))
    hs, (h, c) = lstm.BACKWARDS[backward](*inputs)
    ref_hs, (ref_h, ref_c) = reference_lstm(*map(np.asarray, inputs))
    assert hs.shape == (7, 3, 4)
    np.testing.assert_allclose(hs, ref_hs, atol=1e-5)
    np.testing.assert_allclose(h, ref_h, atol=1e-5)
    np.testing.assert_allclose(c, ref_c, atol=1e-5)


def window_loss(fn, params, windows, carry):
    """Sum of a loss over consecutive windows, the carry passed on with stop_gradient:
    truncated BPTT."""
    w_x, w_h, b = params
    total = 0.0
    for xs in windows:
        hs, carry = fn(w_x, w_h, b, xs, *carry)
        total = total + jnp.sum(jnp.sin(hs)) + jnp.sum(carry[0] * carry[1])
        carry = jax.tree.map(jax.lax.stop_gradient, carry)
    return total


def test_explicit_bptt_equals_autodiff_in_float64():
    with jax.enable_x64(True):
        w_x, w_h, b, xs, h0, c0 = (
            x.astype(jnp.float64) for x in random_inputs(jax.random.PRNGKey(1))
        )

        def loss(fn, *args):
            hs, (h, c) = fn(*args)
            return jnp.sum(jnp.sin(hs) * jnp.arange(hs.shape[0])[:, None, None]) + jnp.sum(h * c)

        argnums = tuple(range(6))
        explicit = jax.grad(lambda *a: loss(lstm.lstm_explicit, *a), argnums)(
            w_x, w_h, b, xs, h0, c0
        )
        autodiff = jax.grad(lambda *a: loss(lstm.lstm_autodiff, *a), argnums)(
            w_x, w_h, b, xs, h0, c0
        )
        for name, e, a in zip(
            ["w_x", "w_h", "b", "xs", "h0", "c0"], explicit, autodiff, strict=True
        ):
            assert e.dtype == jnp.float64
            np.testing.assert_allclose(e, a, rtol=1e-6, atol=1e-9, err_msg=name)


def test_explicit_bptt_equals_autodiff_across_a_truncation_boundary():
    with jax.enable_x64(True):
        w_x, w_h, b, xs, h0, c0 = (
            x.astype(jnp.float64) for x in random_inputs(jax.random.PRNGKey(2), t=8)
        )
        windows = [xs[:4], xs[4:]]
        grads = {
            name: jax.grad(lambda p, fn=fn: window_loss(fn, p, windows, (h0, c0)))((w_x, w_h, b))
            for name, fn in lstm.BACKWARDS.items()
        }
        for e, a in zip(grads["explicit"], grads["autodiff"], strict=True):
            np.testing.assert_allclose(e, a, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backward", ["autodiff", "explicit"])
def test_no_gradient_crosses_a_truncation_boundary(backward):
    w_x, w_h, b, xs, h0, c0 = random_inputs(jax.random.PRNGKey(3), t=8)
    fn = lstm.BACKWARDS[backward]

    def second_window_loss(first_window):
        _, carry = fn(w_x, w_h, b, first_window, h0, c0)
        carry = jax.tree.map(jax.lax.stop_gradient, carry)
        hs, _ = fn(w_x, w_h, b, xs[4:], *carry)
        return jnp.sum(hs)

    grad = jax.grad(second_window_loss)(xs[:4])
    np.testing.assert_array_equal(grad, np.zeros_like(grad))
    # Without the stop_gradient the same gradient is not zero: the test can fail.
    leaky = jax.grad(lambda w: jnp.sum(fn(w_x, w_h, b, xs[4:], *fn(w_x, w_h, b, w, h0, c0)[1])[0]))
    assert float(jnp.abs(leaky(xs[:4])).max()) > 0


def test_module_backward_options_agree():
    module = lstm.LSTM(hidden=6, backward="autodiff")
    xs = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3))
    carry = module.initial_carry(2)
    params = module.init(jax.random.PRNGKey(1), xs, carry)
    explicit = lstm.LSTM(hidden=6, backward="explicit")
    out, (h, c) = module.apply(params, xs, carry)
    assert out.shape == (2, 5, 6) and h.shape == c.shape == (2, 6)
    np.testing.assert_allclose(out[:, -1], h, atol=1e-6)
    loss = lambda m: lambda p: jnp.sum(m.apply(p, xs, carry)[0] ** 2)
    ga, ge = jax.grad(loss(module))(params), jax.grad(loss(explicit))(params)
    jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-6), ga, ge)


def test_language_model_runs_window_by_window_like_one_long_window():
    model = lstm.RecurrentLanguageModel(vocab_size=11, hidden=8, layers=2)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (3, 10), 0, 11)
    carries = model.initial_carry(3)
    params = model.init(jax.random.PRNGKey(1), tokens, carries)
    logits, final = model.apply(params, tokens, carries)
    assert logits.shape == (3, 10, 11) and len(final) == 2
    first, middle = model.apply(params, tokens[:, :4], carries)
    second, end = model.apply(params, tokens[:, 4:], middle)
    np.testing.assert_allclose(jnp.concatenate([first, second], axis=1), logits, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), end, final)
