"""What the trainer reads: training batches, eval arrays and a JSON description.

The kind of input follows the data set: image sets give shuffled (image, label) batches;
text sets give contiguous token streams for truncated BPTT (see text.py); document sets
give shuffled (tokens (sentences x words), label) batches (see documents.py).
"""

import dataclasses

import ml_collections

from jaxdl.data import documents, text
from jaxdl.data.pipeline import ShuffledBatches
from jaxdl.data.sources import TEXT_DATASETS, load, load_text
from jaxdl.errors import check, check_choice


@dataclasses.dataclass(frozen=True)
class Input:
    train: ShuffledBatches | text.StreamBatches  # batch(k), batches_per_epoch
    eval_arrays: dict  # rows, batched by pipeline.eval_batches
    info: dict  # JSON; saved with the run (class names, vocabulary); tasks read it
    items_per_batch: int  # examples (or tokens) per global batch, for the progress line
    item_unit: str  # "ex", "tok" or "doc"

    @property
    def train_arrays(self) -> dict:
        """The whole training set as arrays (what Task.init_from_data reads): images and
        labels, documents' tokens and labels, or a text's token stream ("tokens")."""
        if isinstance(self.train, text.StreamBatches):
            return {"tokens": self.train.tokens}
        return self.train.arrays


def build_input(
    dcfg: ml_collections.ConfigDict, seed: int, process_index: int = 0, process_count: int = 1
) -> Input:
    if dcfg.name in TEXT_DATASETS:
        return _text_input(dcfg, seed, process_index, process_count)
    if dcfg.name in documents.DOCUMENT_DATASETS:
        return _document_input(dcfg, seed, process_index, process_count)
    train_set = load(dcfg.name, dcfg.train_split, dcfg.source, dcfg.data_dir)
    eval_set = load(dcfg.name, dcfg.eval_split, dcfg.source, dcfg.data_dir)
    return Input(
        train=ShuffledBatches(
            train_set.arrays, dcfg.batch_size, seed, process_index, process_count
        ),
        eval_arrays=eval_set.arrays,
        info={
            "name": dcfg.name,
            "origin": train_set.origin,
            "num_train": train_set.num_examples,
            "num_eval": eval_set.num_examples,
            "class_names": list(train_set.class_names),
            "image_shape": list(train_set.arrays["image"].shape[1:]),
        },
        items_per_batch=dcfg.batch_size,
        item_unit="ex",
    )


def _text_input(dcfg, seed: int, process_index: int, process_count: int) -> Input:
    """Characters of the whole text; eval is its tail (`data.eval_fraction`), run as
    `data.eval_batch_size` streams."""
    corpus, origin = load_text(dcfg.name, dcfg.source, dcfg.data_dir)
    vocab = text.CharVocab.of(corpus)
    train_tokens, eval_tokens = text.split_tail(vocab.encode(corpus), dcfg.eval_fraction)
    return Input(
        train=text.StreamBatches(
            train_tokens, dcfg.batch_size, dcfg.window, seed, process_index, process_count
        ),
        eval_arrays=text.eval_streams(eval_tokens, dcfg.eval_batch_size, dcfg.window),
        info={
            "name": dcfg.name,
            "origin": origin,
            "num_train": len(train_tokens),
            "num_eval": len(eval_tokens),
            "vocab": vocab.chars,
        },
        items_per_batch=dcfg.batch_size * dcfg.window,
        item_unit="tok",
    )


def _document_input(dcfg, seed: int, process_index: int, process_count: int) -> Input:
    """Documents as (max_sentences, max_words) token ids; the vocabulary (words seen
    `data.min_count` times in the training documents, plus padding and OOV) and the
    share of words cut by the limits go into info."""
    needed = ["max_sentences", "max_words", "min_count"]
    needed += ["fold"] if dcfg.name == "review_polarity" else []
    for name in needed:
        check(
            name in dcfg,
            f"data.name={dcfg.name!r} needs data.{name} (see experiments/polarity_han.py)",
        )
    keep = dcfg.get("keep_sentences", "first")
    check_choice("data.keep_sentences", keep, documents.KEEP_SENTENCES)  # before reading
    train_docs, eval_docs, class_names, origin = documents.load_splits(dcfg)
    vocab = documents.build_vocab(train_docs, dcfg.min_count)
    train, evals = (
        documents.encode(docs, vocab, dcfg.max_sentences, dcfg.max_words, keep)
        for docs in (train_docs, eval_docs)
    )
    return Input(
        train=ShuffledBatches(
            {"tokens": train.tokens, "label": train.labels},
            dcfg.batch_size,
            seed,
            process_index,
            process_count,
        ),
        eval_arrays={"tokens": evals.tokens, "label": evals.labels},
        info={
            "name": dcfg.name,
            "origin": origin,
            "num_train": len(train_docs),
            "num_eval": len(eval_docs),
            "class_names": list(class_names),
            "fold": dcfg.get("fold"),
            "max_sentences": dcfg.max_sentences,
            "max_words": dcfg.max_words,
            "keep_sentences": keep,
            "truncated_share": {
                "train": round(train.truncated_share, 4),
                "eval": round(evals.truncated_share, 4),
            },
            "words": vocab,
        },
        items_per_batch=dcfg.batch_size,
        item_unit="doc",
    )
