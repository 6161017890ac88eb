"""Character language modelling by truncated back-propagation through time.

Batch k holds window k of B contiguous text streams (data/text.py). The final carry of
one window is the initial carry of the next: it lives in the state (so it is
checkpointed and a resumed run continues the same streams), enters each step through
`stop_gradient` (no gradient crosses a window boundary) and is zeroed where the batch
says `reset` (the first window of an epoch).

Models of the `language_model` family: `model.apply(variables, tokens (B, T) int32,
carries, train=..., rngs=...)` returns (logits (B, T, vocab), new carries), and
`model.initial_carry(batch_size)` the zero carries.
"""

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxdl import losses, registry
from jaxdl.tasks.base import (
    BuildContext,
    Task,
    accumulate_gradients,
    apply_gradients,
    part_key,
)


@struct.dataclass
class LMState:
    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    carry: Any  # one carry per layer, each (B, H) arrays: the streams' recurrent state


def _reset(carry, reset: jax.Array):
    return jax.tree.map(lambda c: jnp.where(reset[:, None], jnp.zeros_like(c), c), carry)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class LanguageModelTask(Task):
    model: nn.Module
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    microbatches: int = 1  # parts of the streams (rows) per step

    def init(self, rng: jax.Array, example_batch: dict) -> LMState:
        params_rng, state_rng = jax.random.split(rng)
        carry = self.model.initial_carry(example_batch["inputs"].shape[0])
        params = self.model.init(params_rng, example_batch["inputs"], carry)["params"]
        return LMState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=self.optimizer.init(params),
            rng=state_rng,
            carry=carry,
        )

    def train_step(self, state: LMState, batch: dict) -> tuple[LMState, dict]:
        dropout_rng = jax.random.fold_in(state.rng, state.step)
        carry = jax.lax.stop_gradient(_reset(state.carry, batch["reset"]))

        def loss_fn(params, part, unused, index):
            logits, new_carry = self.model.apply(
                {"params": params},
                part["inputs"],
                part["carry"],
                train=True,
                rngs={"dropout": part_key(dropout_rng, index, self.microbatches)},
            )
            loss = losses.softmax_cross_entropy(logits, part["targets"]).mean()
            return loss, ({}, unused, new_carry)  # each part's streams keep their carry

        # The carry is per stream: it travels with its rows of the batch.
        rows = {"inputs": batch["inputs"], "targets": batch["targets"], "carry": carry}
        loss, _, _, new_carry, grads = accumulate_gradients(
            loss_fn, state.params, rows, self.microbatches
        )
        new_state, step_metrics = apply_gradients(
            state, grads, self.optimizer, self.schedule, carry=new_carry
        )
        return new_state, {"loss": loss, **step_metrics}  # loss: nats per character

    def row_outputs(self, state: LMState, batch: dict) -> jax.Array:
        """Each stream's logits over its first window, from a zero carry."""
        carry = self.model.initial_carry(batch["inputs"].shape[0])
        return self.model.apply({"params": state.params}, batch["inputs"][:, 0], carry)[0]

    def eval_step(self, state: LMState, batch: dict) -> dict:
        """Loss over streams (S, windows, K) of eval text, each stream run from a zero
        carry through all its windows in order (a scan), as in training."""
        weights = batch["weights"] * batch["mask"][:, None, None]
        carry = self.model.initial_carry(batch["inputs"].shape[0])

        def window(carry, xs):
            inputs, targets, w = xs
            logits, carry = self.model.apply({"params": state.params}, inputs, carry)
            nats = losses.softmax_cross_entropy(logits, targets)
            return carry, (jnp.sum(nats * w), jnp.sum(w))

        by_window = lambda a: a.swapaxes(0, 1)
        _, (nats, counts) = jax.lax.scan(
            window,
            carry,
            (by_window(batch["inputs"]), by_window(batch["targets"]), by_window(weights)),
        )
        total, count = nats.sum(), counts.sum()
        return {
            "loss": losses.Mean(total, count),  # nats per character
            "bits_per_char": losses.Mean(total / math.log(2), count),
        }

    def sample(
        self,
        params,
        prompt: jax.Array,
        length: int,
        rng: jax.Array,
        temperature: float = 1.0,
        top_k: int = 0,
    ) -> jax.Array:
        """`length` token ids drawn after the non-empty `prompt` (1-D ids); temperature 0
        is greedy; top_k > 0 keeps only the k most likely tokens."""
        apply = lambda tokens, carry: self.model.apply({"params": params}, tokens[None], carry)
        logits, carry = apply(prompt, self.model.initial_carry(1))

        def draw(key, logits):
            if top_k:
                kth = jax.lax.top_k(logits, top_k)[0][-1]
                logits = jnp.where(logits < kth, -jnp.inf, logits)
            if temperature == 0:
                return jnp.argmax(logits).astype(jnp.int32)
            return jax.random.categorical(key, logits / temperature).astype(jnp.int32)

        def step(state, key):
            carry, last_logits = state
            token = draw(key, last_logits)
            logits, carry = apply(token[None], carry)
            return (carry, logits[0, -1]), token

        _, tokens = jax.lax.scan(step, (carry, logits[0, -1]), jax.random.split(rng, length))
        return tokens


@registry.task("lm", model_family="language_model", needs="vocab", data="tiny_shakespeare")
def build(cfg, model, context: BuildContext) -> LanguageModelTask:
    optimizer, schedule = context.optimizer()
    return LanguageModelTask(
        model=model, optimizer=optimizer, schedule=schedule, microbatches=context.microbatches
    )
