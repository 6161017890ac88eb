"""A bag-of-n-grams logistic regression: the honest baseline for document classifiers.

Features are binary presence of the unigrams and bigrams seen at least `min_count` times
in the training documents, kept sparse as (document, feature) index pairs. The model is
binary logistic regression with an L2 penalty, fit to convergence by L-BFGS on the whole
training set (the objective is convex, so there is no schedule or seed to tune).
"""

import collections
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax


def ngrams(sentences: Sequence[Sequence[str]], n_max: int) -> set[str]:
    """Distinct 1..n_max-grams of a document, within sentences, joined by spaces."""
    grams = set()
    for sentence in sentences:
        for n in range(1, n_max + 1):
            grams.update(" ".join(sentence[i : i + n]) for i in range(len(sentence) - n + 1))
    return grams


def feature_vocab(documents: Sequence[set[str]], min_count: int) -> dict[str, int]:
    """n-gram -> feature index, for n-grams in at least `min_count` documents."""
    counts = collections.Counter(g for grams in documents for g in grams)
    kept = sorted(g for g, c in counts.items() if c >= min_count)
    return {g: i for i, g in enumerate(kept)}


def featurize(documents: Sequence[set[str]], vocab: dict[str, int]) -> tuple[np.ndarray, ...]:
    """Sparse binary features: (row ids, feature ids) of every present known n-gram."""
    rows, columns = [], []
    for row, grams in enumerate(documents):
        ids = [vocab[g] for g in grams if g in vocab]
        rows += [row] * len(ids)
        columns += ids
    return np.asarray(rows, np.int32), np.asarray(columns, np.int32)


def _logits(params, rows, columns, num_docs):
    weights, bias = params
    return jax.ops.segment_sum(weights[columns], rows, num_segments=num_docs) + bias


def fit(features, labels: np.ndarray, num_features: int, l2: float, iterations: int = 100):
    """(weights, bias) minimising mean logistic loss + l2/2 |weights|^2."""
    rows, columns = (jnp.asarray(a) for a in features)
    return _fit(rows, columns, jnp.asarray(labels, jnp.float32), l2, num_features, iterations)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _fit(rows, columns, targets, l2, num_features: int, iterations: int):
    num_docs = targets.shape[0]

    def objective(params):
        logits = _logits(params, rows, columns, num_docs)
        loss = optax.sigmoid_binary_cross_entropy(logits, targets).mean()
        return loss + 0.5 * l2 * jnp.sum(params[0] ** 2)

    optimizer = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry, _):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = optimizer.update(
            grad, state, params, value=value, grad=grad, value_fn=objective
        )
        return (optax.apply_updates(params, updates), state), None

    params = (jnp.zeros(num_features), jnp.zeros(()))
    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), length=iterations)
    return params


def predict(params, features, num_docs: int) -> np.ndarray:
    """P(label 1) per document."""
    rows, columns = (jnp.asarray(a) for a in features)
    return np.asarray(jax.nn.sigmoid(_logits(params, rows, columns, num_docs)))
