"""Word vectors from co-occurrence counts (pure numpy/scipy): the truncated SVD of the
positive pointwise mutual information matrix (Levy, Goldberg & Dagan, 2015).

With no pretrained embeddings offline, a document classifier can start its embedding
from vectors learned on its own training documents: words used in the same contexts
("dull", "tedious") start close together, so a sentiment word seen in few labelled
reviews shares what the model learns from its neighbours.
"""

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from jaxdl.errors import check
from jaxdl.models.han import OOV_ID, PAD_ID


def cooccurrence_counts(
    tokens: np.ndarray, vocab_size: int, window: int
) -> scipy.sparse.csr_matrix:
    """Symmetric (V, V) counts of word pairs at most `window` apart within a row of
    `tokens` (..., L) int; padding and OOV ids are not counted."""
    rows = tokens.reshape(-1, tokens.shape[-1])
    pairs = []
    for offset in range(1, window + 1):
        left, right = rows[:, :-offset].ravel(), rows[:, offset:].ravel()
        real = (left > max(PAD_ID, OOV_ID)) & (right > max(PAD_ID, OOV_ID))
        pairs.append((left[real], right[real]))
    left = np.concatenate([p[0] for p in pairs])
    right = np.concatenate([p[1] for p in pairs])
    ones = np.ones(2 * len(left), np.float64)
    counts = scipy.sparse.coo_matrix(
        (ones, (np.concatenate([left, right]), np.concatenate([right, left]))),
        shape=(vocab_size, vocab_size),
    )
    return counts.tocsr()


def ppmi(counts: scipy.sparse.csr_matrix, context_power: float = 0.75) -> scipy.sparse.csr_matrix:
    """max(0, log p(w, c) / (p(w) p_a(c))), with the context distribution raised to
    `context_power` and renormalised (which lowers the PMI of rare contexts)."""
    counts = counts.tocoo()
    total = counts.sum()
    word_totals = np.asarray(counts.sum(axis=1)).ravel()
    context = np.asarray(counts.sum(axis=0)).ravel() ** context_power
    context = context / context.sum()
    pmi = np.log(counts.data / total) - np.log(
        word_totals[counts.row] / total * context[counts.col]
    )
    keep = pmi > 0
    return scipy.sparse.csr_matrix(
        (pmi[keep], (counts.row[keep], counts.col[keep])), shape=counts.shape
    )


def ppmi_svd_vectors(tokens: np.ndarray, vocab_size: int, dim: int, window: int = 5) -> np.ndarray:
    """(vocab_size, dim) float32 word vectors U sqrt(S) from the rank-`dim` SVD of the
    PPMI matrix of `tokens`; rows of words with no counted context are 0."""
    check(
        0 < dim < vocab_size - 1,
        f"word vectors of size {dim} need a larger vocabulary ({vocab_size})",
    )
    matrix = ppmi(cooccurrence_counts(tokens, vocab_size, window))
    u, s, _ = scipy.sparse.linalg.svds(matrix, k=dim, random_state=0)
    order = np.argsort(-s)
    return (u[:, order] * np.sqrt(s[order])).astype(np.float32)
