"""Recurrent layers run with `lax.scan`: an LSTM with two interchangeable backward passes,
a GRU, a plain tanh RNN, and the stacked character language model built from them.

`backward="autodiff"`: `jax.grad` differentiates the scan.
`backward="explicit"`: a hand-written back-propagation through time (a reverse scan that
carries dL/dh and dL/dc) installed with `jax.custom_vjp`. It collects the gate
pre-activation gradients dz of every step and forms the weight gradients as one large
matrix product each, instead of accumulating them step by step inside the scan.

Shapes are time-major inside: xs (T, B, D); gate order in the 4H axis: i, f, g, o.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl import registry
from jaxdl.errors import check, check_choice


def _gates(z: jax.Array):
    i, f, g, o = jnp.split(z, 4, axis=-1)
    return jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)


def _forward(w_x, w_h, b, xs, h0, c0, unroll=1):
    """Returns (hs, (h_T, c_T), per-step (c, gates)) of the layer."""
    zx = xs @ w_x + b  # the input projection of every step at once

    def step(carry, zx_t):
        h, c_prev = carry
        i, f, g, o = _gates(zx_t + h @ w_h)
        c = f * c_prev + i * g
        h = o * jnp.tanh(c)
        return (h, c), (h, c, i, f, g, o)

    (h_last, c_last), (hs, cs, *gates) = jax.lax.scan(step, (h0, c0), zx, unroll=unroll)
    return hs, (h_last, c_last), (cs, gates)


def lstm_autodiff(w_x, w_h, b, xs, h0, c0, unroll=1):
    """hs (T, B, H) and the final carry (h_T, c_T)."""
    hs, carry, _ = _forward(w_x, w_h, b, xs, h0, c0, unroll)
    return hs, carry


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def lstm_explicit(w_x, w_h, b, xs, h0, c0, unroll=1):
    """Same values as `lstm_autodiff`; its gradient is the hand-written BPTT below."""
    return lstm_autodiff(w_x, w_h, b, xs, h0, c0, unroll)


def _explicit_fwd(w_x, w_h, b, xs, h0, c0, unroll):
    hs, carry, (cs, gates) = _forward(w_x, w_h, b, xs, h0, c0, unroll)
    return (hs, carry), (w_x, w_h, xs, h0, c0, hs, cs, gates)


def _explicit_bwd(unroll, residuals, cotangents):
    w_x, w_h, xs, h0, c0, hs, cs, (i, f, g, o) = residuals
    d_hs, (d_h_last, d_c_last) = cotangents
    c_prevs = jnp.concatenate([c0[None], cs[:-1]])

    def step(carry, t_inputs):
        dh_next, dc_next = carry
        d_h_out, c, c_prev, i_t, f_t, g_t, o_t = t_inputs
        dh = d_h_out + dh_next
        tanh_c = jnp.tanh(c)
        dc = dc_next + dh * o_t * (1.0 - tanh_c**2)
        dz = jnp.concatenate(
            [
                dc * g_t * i_t * (1.0 - i_t),
                dc * c_prev * f_t * (1.0 - f_t),
                dc * i_t * (1.0 - g_t**2),
                dh * tanh_c * o_t * (1.0 - o_t),
            ],
            axis=-1,
        )
        return (dz @ w_h.T, dc * f_t), dz

    (d_h0, d_c0), dzs = jax.lax.scan(
        step, (d_h_last, d_c_last), (d_hs, cs, c_prevs, i, f, g, o), reverse=True, unroll=unroll
    )
    h_prevs = jnp.concatenate([h0[None], hs[:-1]])
    d_w_h = jnp.einsum("tbh,tbk->hk", h_prevs, dzs)
    d_w_x = jnp.einsum("tbd,tbk->dk", xs, dzs)
    return d_w_x, d_w_h, dzs.sum(axis=(0, 1)), dzs @ w_x.T, d_h0, d_c0


lstm_explicit.defvjp(_explicit_fwd, _explicit_bwd)
BACKWARDS = {"autodiff": lstm_autodiff, "explicit": lstm_explicit}


class LSTM(nn.Module):
    """One LSTM layer over a batch-major sequence: (B, T, D), carry (h, c) -> (B, T, H), carry."""

    hidden: int
    backward: str = "autodiff"
    unroll: int = 1

    @nn.compact
    def __call__(self, xs: jax.Array, carry: tuple[jax.Array, jax.Array]):
        d = xs.shape[-1]
        w_x = self.param("w_x", nn.initializers.lecun_normal(), (d, 4 * self.hidden), jnp.float32)
        w_h = self.param(
            "w_h", nn.initializers.orthogonal(), (self.hidden, 4 * self.hidden), jnp.float32
        )
        # Forget-gate bias 1: remember by default early in training.
        b = self.param(
            "b",
            lambda _, shape: (
                jnp.zeros(shape, jnp.float32).at[self.hidden : 2 * self.hidden].set(1.0)
            ),
            (4 * self.hidden,),
        )
        hs, carry = BACKWARDS[self.backward](w_x, w_h, b, xs.swapaxes(0, 1), *carry, self.unroll)
        return hs.swapaxes(0, 1), carry

    def initial_carry(self, batch_size: int) -> tuple[jax.Array, jax.Array]:
        zeros = jnp.zeros((batch_size, self.hidden), jnp.float32)
        return zeros, zeros


class SimpleRNN(nn.Module):
    """A plain (Elman) RNN layer, h_t = act(x_t W_x + h_{t-1} W_h + b); carry (h,).

    Its gradients through time grow or vanish geometrically with W_h's spectrum, which
    makes it the model for showing what gradient clipping prevents. With `relu` nothing
    bounds the activations either, so a large step can overflow them to inf.
    """

    hidden: int
    activation: str = "tanh"  # tanh | relu
    unroll: int = 1

    @nn.compact
    def __call__(self, xs: jax.Array, carry: tuple[jax.Array]):
        act = ACTIVATIONS[self.activation]
        w_x = self.param(
            "w_x", nn.initializers.lecun_normal(), (xs.shape[-1], self.hidden), jnp.float32
        )
        w_h = self.param(
            "w_h", nn.initializers.orthogonal(), (self.hidden, self.hidden), jnp.float32
        )
        b = self.param("b", nn.initializers.zeros, (self.hidden,), jnp.float32)

        def step(h, zx_t):
            h = act(zx_t + h @ w_h)
            return h, h

        zx = (xs @ w_x + b).swapaxes(0, 1)
        h_last, hs = jax.lax.scan(step, carry[0], zx, unroll=self.unroll)
        return hs.swapaxes(0, 1), (h_last,)

    def initial_carry(self, batch_size: int) -> tuple[jax.Array]:
        return (jnp.zeros((batch_size, self.hidden), jnp.float32),)


class GRU(nn.Module):
    """A GRU layer (Cho et al. 2014) over a batch-major sequence; carry (h,).

    r, u = sigmoid(x W_x + h W_h + b) (reset, update gates); n = tanh(x W_xn + b_xn +
    r * (h W_hn + b_hn)); h' = (1 - u) * n + u * h. The reset gate acts on the recurrent
    projection after the matmul (as cuDNN and torch do), so all three input projections
    are hoisted out of the scan as one matmul.
    """

    hidden: int
    unroll: int = 1

    @nn.compact
    def __call__(self, xs: jax.Array, carry: tuple[jax.Array]):
        h_size = self.hidden
        w_x = self.param(
            "w_x", nn.initializers.lecun_normal(), (xs.shape[-1], 3 * h_size), jnp.float32
        )
        w_h = self.param("w_h", nn.initializers.orthogonal(), (h_size, 3 * h_size), jnp.float32)
        b_x = self.param("b_x", nn.initializers.zeros, (3 * h_size,), jnp.float32)
        b_h = self.param("b_h", nn.initializers.zeros, (3 * h_size,), jnp.float32)

        def step(h, zx_t):
            zh = h @ w_h + b_h
            r = jax.nn.sigmoid(zx_t[..., :h_size] + zh[..., :h_size])
            u = jax.nn.sigmoid(zx_t[..., h_size : 2 * h_size] + zh[..., h_size : 2 * h_size])
            n = jnp.tanh(zx_t[..., 2 * h_size :] + r * zh[..., 2 * h_size :])
            h = (1.0 - u) * n + u * h
            return h, h

        zx = (xs @ w_x + b_x).swapaxes(0, 1)
        h_last, hs = jax.lax.scan(step, carry[0], zx, unroll=self.unroll)
        return hs.swapaxes(0, 1), (h_last,)

    def initial_carry(self, batch_size: int) -> tuple[jax.Array]:
        return (jnp.zeros((batch_size, self.hidden), jnp.float32),)


ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}
CELLS = ("lstm", "rnn")


class RecurrentLanguageModel(nn.Module):
    """Token embedding -> stacked recurrent layers -> logits over the vocabulary.

    `carries` holds one carry per layer, so a long text can be run window by window.
    Dropout (when training) acts on the non-recurrent connections only: the embedding
    output, between layers and before the output layer (Zaremba et al. 2014).
    """

    vocab_size: int
    hidden: int = 256
    layers: int = 2
    cell: str = "lstm"
    backward: str = "autodiff"  # lstm only
    activation: str = "tanh"  # rnn only
    dropout: float = 0.0
    unroll: int = 1

    def _layer(self, index: int) -> nn.Module:
        if self.cell == "lstm":
            return LSTM(self.hidden, self.backward, self.unroll, name=f"lstm_{index}")
        return SimpleRNN(self.hidden, self.activation, self.unroll, name=f"rnn_{index}")

    @nn.compact
    def __call__(self, tokens: jax.Array, carries: tuple, train: bool = False):
        drop = nn.Dropout(self.dropout, deterministic=not train)
        x = drop(nn.Embed(self.vocab_size, self.hidden)(tokens))
        new_carries = []
        for index, carry in enumerate(carries):
            x, carry = self._layer(index)(x, carry)
            x = drop(x)
            new_carries.append(carry)
        return nn.Dense(self.vocab_size)(x), tuple(new_carries)

    def initial_carry(self, batch_size: int) -> tuple:
        zeros = jnp.zeros((batch_size, self.hidden), jnp.float32)
        per_layer = (zeros, zeros) if self.cell == "lstm" else (zeros,)
        return tuple(per_layer for _ in range(self.layers))


@registry.model(
    "rnn_lm",
    family="language_model",
    cell="lstm",  # lstm | rnn
    hidden=256,
    layers=2,
    backward="explicit",  # explicit (hand-written BPTT) | autodiff; lstm only
    activation="tanh",  # tanh | relu; rnn only
    dropout=0.0,
    unroll=1,
)
def build(cfg, info) -> RecurrentLanguageModel:
    check_choice("model.cell", cfg.cell, CELLS)
    check_choice("model.backward", cfg.backward, tuple(BACKWARDS))
    check_choice("model.activation", cfg.activation, tuple(ACTIVATIONS))
    check(cfg.hidden > 0 and cfg.layers > 0, "model.hidden and model.layers must be positive")
    check(0 <= cfg.dropout < 1, f"model.dropout={cfg.dropout} must be in [0, 1)")
    check(cfg.unroll >= 1, f"model.unroll={cfg.unroll} must be >= 1")
    return RecurrentLanguageModel(
        vocab_size=len(info["vocab"]),
        hidden=cfg.hidden,
        layers=cfg.layers,
        cell=cfg.cell,
        backward=cfg.backward,
        activation=cfg.activation,
        dropout=cfg.dropout,
        unroll=cfg.unroll,
    )
