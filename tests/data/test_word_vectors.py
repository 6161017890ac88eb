"""PPMI-SVD word vectors: co-occurrence counts, PPMI against a dense hand computation,
and vectors that put words used in the same contexts together."""

import numpy as np
import pytest

from jaxdl.data.word_vectors import cooccurrence_counts, ppmi, ppmi_svd_vectors
from jaxdl.errors import ConfigError


def test_counts_pairs_within_the_window_and_skip_padding_and_oov():
    tokens = np.array([[[2, 3, 1, 4, 0, 0]], [[3, 2, 0, 0, 0, 0]]])  # 1 = OOV, 0 = padding
    counts = cooccurrence_counts(tokens, vocab_size=5, window=2).toarray()
    expected = np.zeros((5, 5))
    for a, b in [(2, 3), (3, 4), (3, 2)]:  # (2, 1) and (1, 4) involve OOV; 2-4 is 3 apart
        expected[a, b] += 1
        expected[b, a] += 1
    np.testing.assert_array_equal(counts, expected)


def test_ppmi_matches_a_dense_computation():
    rng = np.random.default_rng(0)
    dense = rng.integers(0, 4, (6, 6)).astype(float)
    dense = dense + dense.T
    total = dense.sum()
    p_word = dense.sum(1) / total
    p_context = dense.sum(0) ** 0.75 / (dense.sum(0) ** 0.75).sum()
    with np.errstate(divide="ignore"):
        expected = np.maximum(np.log(dense / total / np.outer(p_word, p_context)), 0)
    import scipy.sparse

    np.testing.assert_allclose(ppmi(scipy.sparse.csr_matrix(dense)).toarray(), expected, atol=1e-12)


def test_words_in_the_same_contexts_get_the_same_vectors():
    # Words 2 and 3 are interchangeable (both follow 4/5 and precede 6/7); 8 and 9 live
    # in other contexts.
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(400):
        rows.append([rng.choice([4, 5]), rng.choice([2, 3]), rng.choice([6, 7])])
        rows.append([rng.choice([10, 11]), rng.choice([8, 9]), rng.choice([12, 13])])
    vectors = ppmi_svd_vectors(np.array(rows)[:, None, :], vocab_size=14, dim=4, window=1)
    assert vectors.shape == (14, 4) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[:2], 0, atol=1e-6)  # padding and OOV: no contexts
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-9)
    assert unit[2] @ unit[3] > 0.95
    assert abs(unit[2] @ unit[8]) < 0.3


def test_too_small_a_vocabulary_is_a_one_line_error():
    with pytest.raises(ConfigError, match="larger vocabulary"):
        ppmi_svd_vectors(np.array([[[2, 3, 4]]]), vocab_size=5, dim=4)
