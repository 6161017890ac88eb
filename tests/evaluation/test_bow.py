"""The bag-of-n-grams logistic regression baseline."""

import numpy as np

from jaxdl.evaluation import bow
from tests.conftest import POLARITY_WORDS


def test_bag_of_words_regression_learns_the_label_words():
    rng = np.random.default_rng(0)
    common = ["the", "film", "is", "a"]

    def review(label):
        words = list(rng.choice(common + POLARITY_WORDS[label], 8))
        return [words[:4], words[4:]]

    labels = np.array([0, 1] * 30)
    docs = [bow.ngrams(review(int(y)), 2) for y in labels]
    assert bow.ngrams([["a", "b", "c"], ["d"]], 2) == {"a", "b", "c", "d", "a b", "b c"}
    vocab = bow.feature_vocab(docs[:40], min_count=2)
    features = bow.featurize(docs, vocab)
    params = bow.fit(bow.featurize(docs[:40], vocab), labels[:40], len(vocab), l2=1e-3)
    probs = bow.predict(params, features, len(docs))
    np.testing.assert_array_equal(probs[40:] > 0.5, labels[40:] == 1)
    weights = np.asarray(params[0])
    assert weights[vocab["great"]] > 0 > weights[vocab["awful"]]
