"""Documents: polarity folds by file prefix, train-only vocabularies, encoding with
truncation, raw-text sentence splitting, the document input."""

import ml_collections
import numpy as np
import pytest

from jaxdl.data import build_input, documents
from jaxdl.data.sources import SHARED_DATA_DIR
from jaxdl.errors import ConfigError, DatasetNotFoundError, UserError


def polarity_config(data_dir, fold=3, **overrides):
    return ml_collections.ConfigDict(
        dict(
            name="review_polarity",
            source="auto",
            data_dir=str(data_dir),
            train_split="train",
            eval_split="test",
            batch_size=8,
            eval_batch_size=8,
            prefetch=1,
            fold=fold,
            max_sentences=4,
            max_words=5,
            min_count=1,
            **overrides,
        )
    )


def test_fold_is_the_file_prefix():
    assert documents.polarity_fold("cv000_29416") == 0
    assert documents.polarity_fold("cv937_9816") == 9
    with pytest.raises(UserError, match="cvNNN"):
        documents.polarity_fold("review_12")


def test_folds_split_by_prefix_and_never_share_a_document(polarity_data_dir):
    docs = documents.read_polarity(polarity_data_dir / documents.POLARITY_ARCHIVE)
    assert len(docs) == 40 and sum(d.label for d in docs) == 20
    assert docs[0].sentences[0][0] in ("the", "film", "is", "a", "and", "plot", "actor", "caf\xe9")
    seen_in_test = []
    for fold in range(10):
        train, test = documents.split_folds(docs, fold)
        assert {d.name[2] for d in test} == {str(fold)}
        assert str(fold) not in {d.name[2] for d in train}
        assert not {d.name for d in train} & {d.name for d in test}
        assert len(train) + len(test) == len(docs)
        seen_in_test += [d.name for d in test]
    assert sorted(seen_in_test) == sorted(d.name for d in docs)  # each tested exactly once
    with pytest.raises(UserError, match=r"data.fold=10"):
        documents.split_folds(docs, 10)


def test_missing_archive_is_a_one_line_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="not found"):
        documents.read_polarity(tmp_path / "review_polarity.tar.gz")


def doc(name, *sentences, label=0):
    return documents.Document(name, label, tuple(tuple(s.split()) for s in sentences))


def test_vocabulary_counts_only_the_given_documents_and_min_count():
    train = [doc("cv000_1", "a b b", "c a"), doc("cv100_1", "b d")]
    assert documents.build_vocab(train, 1) == ["<pad>", "<unk>", "b", "a", "c", "d"]
    assert documents.build_vocab(train, 2) == ["<pad>", "<unk>", "b", "a"]


def test_encode_truncates_pads_and_maps_unknown_words_to_oov():
    vocab = ["<pad>", "<unk>", "good", "film"]
    docs = [doc("x", "good film", "a very good film indeed", "film", "extra"), doc("y", "good")]
    encoded = documents.encode(docs, vocab, max_sentences=3, max_words=4)
    expected = np.zeros((2, 3, 4), np.int32)
    expected[0, 0, :2] = [2, 3]
    expected[0, 1, :4] = [1, 1, 2, 3]  # "indeed" cut
    expected[0, 2, :1] = [3]  # "extra" (4th sentence) cut
    expected[1, 0, :1] = [2]
    np.testing.assert_array_equal(encoded.tokens, expected)
    np.testing.assert_array_equal(encoded.labels, [0, 0])
    assert (encoded.num_tokens, encoded.num_kept) == (10, 8)
    assert encoded.truncated_share == pytest.approx(0.2)


def test_encode_can_keep_the_last_sentences():
    vocab = ["<pad>", "<unk>", "good", "film"]
    docs = [doc("x", "good", "film", "good film", "film good"), doc("y", "film")]
    encoded = documents.encode(docs, vocab, max_sentences=2, max_words=2, keep="last")
    expected = np.zeros((2, 2, 2), np.int32)
    expected[0] = [[2, 3], [3, 2]]  # sentences 3 and 4 of 4
    expected[1, 0, 0] = 3  # a short document starts at the top, as with keep="first"
    np.testing.assert_array_equal(encoded.tokens, expected)
    assert (encoded.num_tokens, encoded.num_kept) == (7, 5)
    assert [documents.first_read_sentence(n, 2, "last") for n in (0, 1, 2, 4)] == [0, 0, 0, 2]
    with pytest.raises(ConfigError, match="keep_sentences='middle'"):
        documents.encode(docs, vocab, 2, 2, keep="middle")


def test_bad_keep_sentences_is_caught_before_the_archive_is_read(tmp_path):
    config = polarity_config(tmp_path / "no_data_here", fold=0)
    config.keep_sentences = "middle"
    with pytest.raises(ConfigError, match="keep_sentences='middle'"):
        build_input(config, seed=0)


def test_document_input_builds_vocabulary_from_training_folds_only(polarity_data_dir):
    inputs = build_input(polarity_config(polarity_data_dir, fold=3), seed=0)
    info = inputs.info
    assert (info["num_train"], info["num_eval"], info["fold"]) == (36, 4, 3)
    assert info["class_names"] == ["neg", "pos"]
    all_docs = documents.read_polarity(polarity_data_dir / documents.POLARITY_ARCHIVE)
    train, test = documents.split_folds(all_docs, 3)
    train_words = {w for d in train for s in d.sentences for w in s}
    assert set(info["words"][2:]) == train_words
    # A word seen only in the test fold is OOV there: plant one and rebuild.
    test_only = "unseenword"
    assert test_only not in train_words
    vocab = documents.build_vocab(train, 1)
    planted = documents.Document(test[0].name, 0, ((test_only, "film"),))
    tokens = documents.encode([planted], vocab, 2, 3).tokens
    assert tokens[0, 0, 0] == 1 and tokens[0, 0, 1] == vocab.index("film")
    assert inputs.eval.arrays["tokens"].shape == (4, 4, 5)
    batch = inputs.train.batch(0)
    assert batch["tokens"].shape == (8, 4, 5) and batch["tokens"].dtype == np.int32
    shares = info["truncated_share"]
    assert 0 < shares["train"] < 1 and 0 <= shares["eval"] < 1  # limits 4 x 5 cut some


def test_real_archive_has_ten_balanced_folds():
    archive = SHARED_DATA_DIR / documents.POLARITY_ARCHIVE
    if not archive.is_file():
        pytest.skip(f"no {archive}")
    docs = documents.read_polarity(archive)
    assert len(docs) == 2000
    for fold in range(10):
        _, test = documents.split_folds(docs, fold)
        assert len(test) == 200 and sum(d.label for d in test) == 100


def test_raw_text_is_split_into_sentences_and_tokens():
    text = "I loved it. Truly! The <br /><br />ending wasn't great... 10/10 &amp; more"
    assert documents.split_sentences(text) == [
        "I loved it.",
        "Truly!",
        "The",
        "ending wasn't great...",
        "10/10 &amp; more",
    ]
    assert documents.tokenize("The ending wasn't GREAT...") == (
        "the",
        "ending",
        "wasn't",
        "great",
        ".",
        ".",
        ".",
    )
    assert documents.tokenize("10/10 &amp; more") == ("10", "/", "10", "&", "more")
    docs = documents.documents_from_text(["Good. Bad!", "<br />"], [1, 0], "imdb_reviews_test")
    assert docs[0] == documents.Document("imdb_reviews_test_0", 1, (("good", "."), ("bad", "!")))
    assert docs[1].sentences == ()
