"""The Task interface: the trainer's whole view of a kind of training.

A Task is pure. Every task subclasses `Task` and defines, for use under `jax.jit`:

    init(rng, example_batch) -> state
    train_step(state, batch) -> (state, metrics)   # metrics: dict of scalars
    eval_step(state, batch) -> metrics             # metrics: dict of losses.Mean

and may override the optional capabilities, whose defaults do nothing:

    pretrain_steps, pretrain_step(state, batch)    # a first phase, compiled on its own
    images(state, eval_batch) -> {name: uint8}     # pictures drawn at each eval
    init_from_data(state, train_sample) -> state  # a data-dependent start, outside jit
    num_params(state) -> int                       # for the log

`state` is any pytree with an integer `step` field (the trainer reads nothing else);
`TrainState` below serves single-model tasks. A task that needs more (an LM's carried
RNN state, a GAN's two parameter sets and optimizers) defines its own state dataclass.
An eval that carries something across windows (an LM's hidden state) scans over its
windows inside one eval_step, so the trainer never threads a carry.

The contract, in full (a task registers with `registry.task(name, model_family=,
needs=, data=, **defaults)`; its builder gets `(cfg, model, BuildContext)`):

Batches are dicts of arrays with a leading batch axis (the global batch, sharded over
devices), holding the fields its data source `yields`:
    images      image uint8 (B, H, W, C) in 0..255, label int32 (B,)
    text        inputs, targets int32 (B, window) character ids, reset bool (B,): a
                stream's first window of an epoch (zero the carry); eval: B whole
                streams, inputs and targets (B, windows, window) and weights float32
                of that shape, 0 where nothing is predicted
    documents   tokens int32 (B, max_sentences, max_words) word ids (0 padding, 1
                OOV), label int32 (B,)
Eval batches are padded to data.eval_batch_size, every example once, with `mask` bool
(B,): True for real rows. The padding rows repeat example 0. `index` int32 (B,) is each
row's place in the eval set: what a row draws at random in eval comes from `row_keys`,
so that no metric depends on the batch a row is in.

`info` (the input's description, saved as run.json's `data`; `BuildContext.info`, and
the model builder's `info`) always holds name, origin, num_train and num_eval; a task's
`needs=` is one of the keys its source `provides`:
    class_names    list of str: label i is class_names[i] (image sets, documents)
    image_shape    [H, W, C] of the batches' images (image sets)
    vocab          str: character i of the text's alphabet, len = the vocabulary size
                   (text sets)
    words          list of str: word id i (0 "<pad>", 1 "<unk>"; documents), beside
                   max_sentences, max_words, keep_sentences and truncated_share
A source prepared as ArrayRecord (datasets/array_record.py) provides what its origin
did. `needs` is checked before any step (tasks.build); read other keys with
`info.get`.

Metrics: train_step's are scalars (float32 arrays of shape ()), which the trainer
checks finite before any checkpoint and averages over each log window
(`train/<name>`); eval_step's are `losses.Mean(total, count)` of the batch's real rows
(`Mean.of(values, batch["mask"])`): summed over the eval set's batches, then
total / count (`eval/<name>`), so a padding row must change no metric and the eval
batch size none. Randomness: `jax.random.fold_in(state.rng, state.step)` in every step
(a key reused every step trains on the same noise). `images(state, eval_batch)` gets
the first eval batch (padded, `mask`) and returns {name: uint8 (H, W) or (H, W, C)},
written as workdir/images/<name>_<step>.png at each eval; `viz.image_grid` makes one
from float pictures (rows, cols, h, w, c) in [0, 1]. `row_outputs(state, eval_batch)`
returns the model's eval-mode outputs per row. `jaxdl.testing.check_task` checks all of
this on a task (README, "Testing your own model").
"""

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from jaxdl import optim


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any
    opt_state: Any
    rng: jax.Array  # raw uint32 key; step keys are fold_in(rng, step)
    model_state: Any  # non-trained variables, e.g. {"batch_stats": ...}; {} if none

    @classmethod
    def create(
        cls, params, optimizer: optax.GradientTransformation, rng, model_state=None, ema=False
    ):
        """Step 0 with a fresh optimizer state for `params`; with `ema`, an
        `AveragedTrainState` whose average starts at `params`."""
        fields = dict(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=optimizer.init(params),
            rng=rng,
            model_state={} if model_state is None else model_state,
        )
        return AveragedTrainState(**fields, ema_params=params) if ema else cls(**fields)

    @property
    def eval_params(self):
        """The parameters to evaluate."""
        return self.params


@struct.dataclass
class AveragedTrainState(TrainState):
    """A TrainState that also keeps an exponential moving average of its parameters,
    which evaluation uses. (A subclass rather than an optional field, so checkpoints of
    states without an average keep their structure.)"""

    ema_params: Any

    @property
    def eval_params(self):
        return self.ema_params


def ema_decay(decay: float, step: jax.Array) -> jax.Array:
    """`decay`, lowered early on ((1 + t) / (10 + t)) so the average forgets the random
    initial weights within the first few hundred steps."""
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(average, params, decay: float, step: jax.Array):
    """One step of the moving average of `params` (decay ramped up by `ema_decay`)."""
    rate = ema_decay(decay, step)
    return jax.tree.map(lambda a, p: rate * a + (1 - rate) * p, average, params)


def value_and_grad(loss_fn, params, has_aux: bool = False):
    """`jax.value_and_grad(loss_fn, has_aux=has_aux)(params)`, with its two passes named
    `forward` and `backward` (jax.named_scope) so that a profile of the step reads."""
    with jax.named_scope("forward"):
        if has_aux:
            loss, pullback, aux = jax.vjp(loss_fn, params, has_aux=True)
        else:
            loss, pullback = jax.vjp(loss_fn, params)
    with jax.named_scope("backward"):
        (grads,) = pullback(jnp.ones_like(loss))
    return ((loss, aux) if has_aux else loss), grads


def accumulate_gradients(loss_fn, params, batch: dict, microbatches: int, carry=None):
    """Gradient accumulation: `loss_fn(params, part, carry, index) -> (loss, (metrics,
    carry, rows))` over `microbatches` equal parts of the batch's rows, one after another
    (a lax.scan: one part's activations in memory at a time). Returns the mean loss, the
    metrics' means, the carry after the last part (threaded through in order, e.g. batch
    statistics), `rows` of the parts joined back into the batch's rows (a pytree with a
    leading rows axis, or None) and the mean gradient: with equal parts the gradient of
    the whole batch's mean loss. With 1 part, value_and_grad of the whole batch."""
    if microbatches == 1:
        fn = lambda p: loss_fn(p, batch, carry, 0)
        (loss, (metrics, carry, rows)), grads = value_and_grad(fn, params, has_aux=True)
        return loss, metrics, carry, rows, grads
    parts = jax.tree.map(
        lambda x: x.reshape(microbatches, x.shape[0] // microbatches, *x.shape[1:]), batch
    )

    def one(accumulated, part_and_index):
        grad_sum, carry = accumulated
        part, index = part_and_index
        fn = lambda p: loss_fn(p, part, carry, index)
        (loss, (metrics, carry, rows)), grads = value_and_grad(fn, params, has_aux=True)
        return (jax.tree.map(jnp.add, grad_sum, grads), carry), (loss, metrics, rows)

    start = (jax.tree.map(jnp.zeros_like, params), carry)
    (grad_sum, carry), (losses, metrics, rows) = jax.lax.scan(
        one, start, (parts, jnp.arange(microbatches))
    )
    mean = lambda x: jnp.mean(x, axis=0)
    rows = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), rows)
    grads = jax.tree.map(lambda g: g / microbatches, grad_sum)
    return mean(losses), jax.tree.map(mean, metrics), carry, rows, grads


def row_keys(key: jax.Array, batch: dict) -> jax.Array:
    """One key per row of an eval batch, from the row's place in the eval set (its
    `index`; else its place in the batch): what a row draws (a posterior sample, the
    noise of a fake paired with it) then does not depend on the batch it is in."""
    rows = batch.get("index")
    if rows is None:
        rows = jnp.arange(len(next(iter(batch.values()))))
    return jax.vmap(lambda row: jax.random.fold_in(key, row))(rows)


def part_key(key: jax.Array, index, microbatches: int) -> jax.Array:
    """The random key of micro-batch `index`: the step's own key when there is one part."""
    return key if microbatches == 1 else jax.random.fold_in(key, index)


def apply_gradients(
    state, grads, optimizer, schedule, ema: float = 0.0, **changes
) -> tuple[Any, dict]:
    """One optimizer step on `state.params` (a state with `params` and `opt_state`):
    the new state (step + 1, and `changes`; `ema_params` moved towards the new params
    with decay `ema` if the state keeps them) and the step's `grad_norm` (before
    clipping) and `learning_rate` metrics."""
    with jax.named_scope("optimizer"):
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if isinstance(state, AveragedTrainState):
            changes["ema_params"] = ema_update(state.ema_params, params, ema, state.step)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, **changes)
    return new_state, {"grad_norm": optax.global_norm(grads), "learning_rate": schedule(state.step)}


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """What a task's builder (registry.task) reads besides its own config section."""

    info: dict  # the data's description (class names, vocabulary, image shape)
    total_steps: int
    batch_size: int  # the global training batch
    optimizer_config: ml_collections.ConfigDict  # config.optimizer
    # Some of optim.TRACEABLE as traced arrays: one trial's numbers in a vmapped group.
    optimizer_values: dict = dataclasses.field(default_factory=dict)
    microbatches: int = 1  # train.microbatches: parts of a batch per optimizer step

    def optimizer(self) -> tuple[optax.GradientTransformation, optax.Schedule]:
        """The optimizer of config.optimizer (with this trial's numbers) and its schedule."""
        return optim.build_optimizer(self.optimizer_config, self.total_steps, self.optimizer_values)


class Task:
    """The base of every task (see the module doc): the required methods raise, the
    optional capabilities default to nothing."""

    # The first phase: its `pretrain_steps` steps run `pretrain_step` (compiled on its
    # own: one step that switched phases with `lax.cond` ran much slower on CPU).
    pretrain_steps: int = 0

    def init(self, rng: jax.Array, example_batch: dict) -> Any:
        raise NotImplementedError

    def train_step(self, state: Any, batch: dict) -> tuple[Any, dict]:
        raise NotImplementedError

    def eval_step(self, state: Any, batch: dict) -> dict:
        raise NotImplementedError

    def pretrain_step(self, state: Any, batch: dict) -> tuple[Any, dict]:
        raise NotImplementedError(f"{type(self).__name__} has no first phase")

    def images(self, state: Any, batch: dict) -> dict:
        """Pictures of the model on the first eval batch, {name: uint8 (H, W[, C])} (see
        the module doc): none here."""
        return {}

    def init_from_data(self, state: Any, train_sample: Mapping) -> Any:
        """A fresh state's data-dependent start (never on resume), called once outside jit
        with a bounded sample of the training set as arrays (data.Input.train_sample:
        every example of a set up to 100k, read when first indexed): none here."""
        return state

    def row_outputs(self, state: Any, batch: dict) -> Any:
        """In eval mode, the model's outputs for each row of an eval batch: a pytree with
        a leading rows axis (jaxdl.testing checks that no row depends on the others).
        None here: not given, that check is skipped."""
        return None

    def num_params(self, state: Any) -> int:
        """How many numbers the task trains (for the log)."""
        return sum(x.size for x in jax.tree.leaves(state.params))


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
