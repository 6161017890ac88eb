"""The Task interface: what the trainer knows about any kind of training.

A Task is pure. The trainer calls, under `jax.jit`:

    init(rng, example_batch) -> state
    train_step(state, batch) -> (state, metrics)   # metrics: dict of scalars
    eval_step(state, batch) -> metrics             # metrics: dict of losses.Mean

A task may also define `pretrain_steps` (int) and `pretrain_step(state, batch)`: the
trainer then runs its first `pretrain_steps` steps with `pretrain_step`, compiled on its
own (one step that switched phases with `lax.cond` ran 2.7x slower on CPU).
It may define `init_from_data(state, train_arrays) -> state`, a data-dependent start
(a document classifier's word vectors from its training text): the trainer calls it once,
outside jit, on a fresh run's state (never on resume), with the training set's arrays.

`state` is any pytree with an integer `step` field (the trainer reads nothing else);
`TrainState` below serves single-model tasks. A task that needs more (an LM's carried
RNN state, a GAN's two parameter sets and optimizers) defines its own state dataclass.
An eval that carries something across windows (an LM's hidden state) scans over its
windows inside one eval_step, so the trainer never threads a carry.
Batches are dicts of arrays; eval batches have a boolean `mask` for padding rows.
"""

from typing import Any, Protocol

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any
    opt_state: Any
    rng: jax.Array  # raw uint32 key; step keys are fold_in(rng, step)
    model_state: Any  # non-trained variables, e.g. {"batch_stats": ...}; {} if none

    @classmethod
    def create(cls, params, optimizer: optax.GradientTransformation, rng, model_state=None):
        """Step 0 with a fresh optimizer state for `params`."""
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=optimizer.init(params),
            rng=rng,
            model_state={} if model_state is None else model_state,
        )


def apply_gradients(state, grads, optimizer, schedule, **changes) -> tuple[Any, dict]:
    """One optimizer step on `state.params` (a state with `params` and `opt_state`):
    the new state (step + 1, and `changes`) and the step's `grad_norm` (before clipping)
    and `learning_rate` metrics."""
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        opt_state=opt_state,
        **changes,
    )
    return new_state, {"grad_norm": optax.global_norm(grads), "learning_rate": schedule(state.step)}


class Task(Protocol):
    def init(self, rng: jax.Array, example_batch: dict) -> Any: ...

    def train_step(self, state: Any, batch: dict) -> tuple[Any, dict]: ...

    def eval_step(self, state: Any, batch: dict) -> dict: ...


class Generator(Protocol):
    """A task whose model turns noise (and a label, if conditional) into images: a GAN's
    generator, an AE/VAE decoder. Tools (launch/serve.py) use any of them alike.

    `generate(state, noise, labels)`: noise float32 (N, noise_dim) drawn from
    `noise_distribution` ("uniform" in [-1, 1] or "normal"), labels int32 (N,) (ignored
    unless `conditional`) -> float32 images (N, H, W, C) in [0, 1]."""

    noise_dim: int
    noise_distribution: str
    conditional: bool

    def generate(self, state: Any, noise: jax.Array, labels: jax.Array) -> jax.Array: ...
