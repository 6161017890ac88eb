"""Document classification: softmax cross-entropy over a model that also returns its
word and sentence attention (models/han.py); word dropout on device; optionally word
vectors learned from the training text as the embedding's start (word_vectors.py).

Models of the `document_classifier` family: `model.apply(variables, tokens (B, S, W)
int32, train=..., rngs=...)` (padding id models.han.PAD_ID, out-of-vocabulary OOV_ID)
returns (logits (B, C), word attention (B, S, W), sentence attention (B, S)); with
`embed_init="ppmi"` its parameters hold the word embedding at
params["encoder"]["embedding"]["embedding"].
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl import losses, registry
from jaxdl.errors import check, check_choice
from jaxdl.models.han import OOV_ID, PAD_ID
from jaxdl.tasks.base import (
    AveragedTrainState,
    BuildContext,
    Task,
    TrainState,
    accumulate_gradients,
    apply_gradients,
    part_key,
)

EMBED_INITS = ("random", "ppmi")


def word_dropout(rng: jax.Array, tokens: jax.Array, rate: float) -> jax.Array:
    """Each real word becomes OOV with probability `rate`; padding stays padding."""
    if rate == 0:
        return tokens
    dropped = jax.random.bernoulli(rng, rate, tokens.shape) & (tokens != PAD_ID)
    return jnp.where(dropped, OOV_ID, tokens)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class DocumentClassifyTask(Task):
    model: nn.Module
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    label_smoothing: float
    word_dropout: float
    embed_init: str
    ppmi_window: int
    ema: float  # decay of the parameters' moving average that eval uses; 0: none
    microbatches: int = 1

    def init(self, rng: jax.Array, example_batch: dict) -> TrainState:
        params_rng, state_rng = jax.random.split(rng)
        params = self.model.init(params_rng, example_batch["tokens"], train=False)["params"]
        return TrainState.create(params, self.optimizer, state_rng, ema=self.ema > 0)

    def init_from_data(self, state: TrainState, train_sample: dict) -> TrainState:
        """With embed_init="ppmi", the word embedding starts as PPMI-SVD vectors of the
        training tokens, scaled to the random start's standard deviation; padding and OOV
        keep their random rows. (A vmapped state's trials all get the same vectors.)"""
        if self.embed_init == "random":
            return state
        # Imported here: scipy costs every launch a tenth of a second, and only this uses it.
        from jaxdl.data.word_vectors import ppmi_svd_vectors

        table = state.params["encoder"]["embedding"]["embedding"]  # (..., vocab, embed)
        vectors = ppmi_svd_vectors(
            np.asarray(train_sample["tokens"]), table.shape[-2], table.shape[-1], self.ppmi_window
        )
        words = OOV_ID + 1  # the first real word's id
        vectors *= float(jnp.std(table)) / max(float(vectors[words:].std()), 1e-12)
        start = jnp.broadcast_to(vectors, table.shape)
        start = start.at[..., :words, :].set(table[..., :words, :])
        params = {**state.params}
        params["encoder"] = {**params["encoder"], "embedding": {"embedding": start}}
        if isinstance(state, AveragedTrainState):  # a copy: the trainer donates both buffers
            return state.replace(params=params, ema_params=jax.tree.map(jnp.copy, params))
        return state.replace(params=params)

    def train_step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        drop_rng, dropout_rng = jax.random.split(jax.random.fold_in(state.rng, state.step))
        tokens = word_dropout(drop_rng, batch["tokens"], self.word_dropout)

        def loss_fn(params, part, carry, index):
            rngs = {"dropout": part_key(dropout_rng, index, self.microbatches)}
            logits, _, _ = self.model.apply(
                {"params": params}, part["tokens"], train=True, rngs=rngs
            )
            labels = part["label"]
            loss = losses.softmax_cross_entropy(logits, labels, self.label_smoothing).mean()
            return loss, ({"accuracy": losses.accuracy(logits, labels).mean()}, carry, None)

        loss, metrics, _, _, grads = accumulate_gradients(
            loss_fn, state.params, {"tokens": tokens, "label": batch["label"]}, self.microbatches
        )
        new_state, step_metrics = apply_gradients(
            state, grads, self.optimizer, self.schedule, ema=self.ema
        )
        return new_state, {"loss": loss, **metrics, **step_metrics}

    def predict(self, state: TrainState, tokens: jax.Array):
        """Eval mode: (class probabilities (B, C), word attention (B, S, W), sentence
        attention (B, S)); what the attention view draws."""
        logits, word_attention, sentence_attention = self.model.apply(
            {"params": state.eval_params}, tokens, train=False
        )
        return jax.nn.softmax(logits), word_attention, sentence_attention

    def row_outputs(self, state: TrainState, batch: dict):
        return self.predict(state, batch["tokens"])

    def eval_step(self, state: TrainState, batch: dict) -> dict:
        logits, _, _ = self.model.apply({"params": state.eval_params}, batch["tokens"], train=False)
        return losses.classification_metrics(logits, batch["label"], batch.get("mask"))


@registry.task(
    "classify_documents",
    model_family="document_classifier",
    needs="words",
    data="review_polarity",
    label_smoothing=0.0,
    word_dropout=0.3,  # each real word becomes OOV with this probability when training
    embed_init="ppmi",  # start from word vectors of the training text, or "random"
    ppmi_window=5,  # words either side counted as a word's context
    ema=0.0,  # decay of a weight average that eval uses (0: none)
    legacy=dict(embed_init="random"),
)
def build(cfg, model, context: BuildContext) -> DocumentClassifyTask:
    check(0 <= cfg.word_dropout < 1, f"task.word_dropout={cfg.word_dropout} must be in [0, 1)")
    check(0 <= cfg.label_smoothing < 1, "task.label_smoothing must be in [0, 1)")
    check_choice("task.embed_init", cfg.embed_init, EMBED_INITS)
    check(cfg.ppmi_window >= 1, f"task.ppmi_window={cfg.ppmi_window} must be >= 1")
    check(0 <= cfg.ema < 1, f"task.ema={cfg.ema} must be in [0, 1)")
    optimizer, schedule = context.optimizer()
    return DocumentClassifyTask(
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        label_smoothing=cfg.label_smoothing,
        word_dropout=cfg.word_dropout,
        embed_init=cfg.embed_init,
        ppmi_window=cfg.ppmi_window,
        ema=cfg.ema,
        microbatches=context.microbatches,
    )
