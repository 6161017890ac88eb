"""A tiny classifier and task with a switch for each bug jaxdl.testing must catch:
`registered()` makes them planted_mlp / planted_classify (`bug` in their config
sections) for as long as it is open, so that no other test sees them."""

import contextlib
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.experimental.custom_partitioning import custom_partitioning

from jaxdl import losses, optim, registry
from jaxdl.tasks.base import Task, TrainState
from jaxdl.tasks.classify import ClassifyTask

_CALLS = itertools.count()


@custom_partitioning
def centred(x):
    """Rows minus their mean: a custom kernel whose partitioning (below) is wrong."""
    return x - x.mean(axis=0, keepdims=True)


def _partition(mesh, arg_shapes, result_shape):
    sharding = arg_shapes[0].sharding
    # The bug: on a batch split over devices, each device centres its rows by their own
    # mean (no mean over the devices).
    return mesh, lambda x: x - x.mean(axis=0, keepdims=True), sharding, (sharding,)


centred.def_partition(
    partition=_partition,
    infer_sharding_from_operands=lambda mesh, arg_shapes, result_shape: arg_shapes[0].sharding,
    sharding_rule="b f -> b f",
)


class PlantedMLP(nn.Module):
    num_classes: int
    bug: str = ""

    @nn.compact
    def __call__(self, x, train: bool = False, penultimate: bool = False):
        x = x.reshape(x.shape[0], -1)
        if self.bug == "partitioned_wrong":
            x = centred(x)
        h = nn.Dense(16)(x)
        if self.bug == "float64":
            h = h * self.param("scale", lambda key: np.ones((), np.float64))
        if self.bug == "stop_gradient":
            h = jax.lax.stop_gradient(h)
        if (self.bug == "mix_rows" and not train) or (self.bug == "batch_statistic" and train):
            h = h - h.mean(axis=0, keepdims=True)
        h = nn.relu(h)
        if self.bug == "dropout":
            h = nn.Dropout(0.5, deterministic=not train)(h)
        if penultimate:
            return h
        logits = nn.Dense(self.num_classes)(h)
        if self.bug == "bfloat16":  # in the compute dtype: bfloat16 is exact to 4 near 512
            logits = (10 * logits + 512.0) - 512.0
        return logits


def build_model(cfg, info) -> nn.Module:
    return PlantedMLP(len(info["class_names"]), cfg.bug)


@struct.dataclass
class CountingState(TrainState):
    seen: int = struct.field(pytree_node=False, default=0)  # not a leaf: never saved


class PlantedTask(Task):
    def __init__(self, inner: ClassifyTask, bug: str):
        self.inner, self.bug = inner, bug

    def init(self, rng, example_batch):
        if self.bug == "init_ignores_key":
            rng = jax.random.PRNGKey(0)
        state = self.inner.init(rng, example_batch)
        if self.bug == "init_host_random":
            state = state.replace(
                params=jax.tree.map(lambda p: p + np.random.normal(), state.params)
            )
        if self.bug == "static_counter":
            state = CountingState(
                **{name: getattr(state, name) for name in state.__dataclass_fields__}
            )
        return state

    def train_step(self, state, batch):
        if self.bug == "reused_key":  # the step's keys never see the step number
            new_state, metrics = self.inner.train_step(state.replace(step=0 * state.step), batch)
            return new_state.replace(step=state.step + 1), metrics
        new_state, metrics = self.inner.train_step(state, batch)
        if self.bug == "step_counter":
            metrics["loss"] = metrics["loss"] + 1e-3 * next(_CALLS)
        if self.bug == "tracer_branch" and isinstance(metrics["loss"], jax.core.Tracer):
            metrics["loss"] = 2 * metrics["loss"]
        if self.bug == "vector_metric":
            metrics["accuracy"] = jnp.ones(batch["label"].shape)
        if self.bug == "static_counter":
            new_state = new_state.replace(seen=state.seen + 1)
        return new_state, metrics

    def eval_step(self, state, batch):
        if self.bug == "eval_no_mask":
            batch = {k: v for k, v in batch.items() if k != "mask"}
        metrics = self.inner.eval_step(state, batch)
        if self.bug == "eval_mean_of_means":
            metrics = {k: losses.Mean(m.total / m.count, jnp.ones(())) for k, m in metrics.items()}
        return metrics

    def row_outputs(self, state, batch):
        return self.inner.row_outputs(state, batch)


def build_task(cfg, model, context) -> PlantedTask:
    if cfg.bug == "ignores_trial_values":  # every vmapped trial gets the config's numbers
        optimizer, schedule = optim.build_optimizer(context.optimizer_config, context.total_steps)
    else:
        optimizer, schedule = context.optimizer()
    inner = ClassifyTask(
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        label_smoothing=0.0,
        flip=False,
        shift=0,
        microbatches=context.microbatches,
    )
    return PlantedTask(inner, cfg.bug)


@contextlib.contextmanager
def registered():
    registry.model("planted_mlp", family="classifier", bug="")(build_model)
    registry.task("planted_classify", model_family="classifier", needs="class_names", bug="")(
        build_task
    )
    try:
        yield
    finally:
        registry.unregister("model", "planted_mlp")
        registry.unregister("task", "planted_classify")
