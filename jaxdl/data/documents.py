"""Documents as sentences of words: readers, a word vocabulary, and fixed-shape encoding.

Review polarity v2.0 (Pang & Lee 2004) is read straight from its tarball; its ten
cross-validation folds are the file-name prefixes cv0xx ... cv9xx. TFDS `imdb_reviews`
and `yelp_polarity_reviews` are raw text: `split_sentences` and `tokenize` turn them into
the same form. A `Document` is (name, label, sentences of tokens).
"""

import collections
import dataclasses
import html
import re
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxdl.errors import DataError, DatasetNotFoundError, check, check_choice

PAD, OOV = "<pad>", "<unk>"  # ids 0 and 1 of every vocabulary
POLARITY_CLASSES = ("neg", "pos")
POLARITY_ARCHIVE = Path("review_polarity") / "review_polarity.tar.gz"
NUM_FOLDS = 10
_POLARITY_MEMBER = re.compile(r"txt_sentoken/(neg|pos)/(cv(\d)\d\d_\d+)\.txt$")


@dataclasses.dataclass(frozen=True)
class Document:
    name: str
    label: int
    sentences: tuple[tuple[str, ...], ...]


def polarity_fold(name: str) -> int:
    """The cross-validation fold of a review: cv3xx_... -> 3."""
    match = re.fullmatch(r"cv(\d)\d\d_\d+", name)
    check(match is not None, f"{name!r} is not a review polarity file name (cvNNN_NNNN)")
    return int(match.group(1))


def read_polarity(archive: Path) -> list[Document]:
    """Every review of the v2.0 tarball (already one tokenised sentence per line), in
    archive order. Raises DatasetNotFoundError if the file is missing or holds none."""
    if not archive.is_file():
        raise DatasetNotFoundError(f"review polarity archive not found: {archive}")
    documents = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                match = _POLARITY_MEMBER.search(member.name)
                if not member.isfile() or match is None:
                    continue
                # The files are Latin-1 in places (accented names); no byte is lost so.
                text = tar.extractfile(member).read().decode("latin-1")
                lines = text.splitlines()
                sentences = tuple(tuple(line.split()) for line in lines if line.split())
                label = POLARITY_CLASSES.index(match.group(1))
                documents.append(Document(match.group(2), label, sentences))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{archive} is damaged ({e}); replace it with a good copy") from e
    if not documents:
        raise DatasetNotFoundError(f"{archive} holds no txt_sentoken/{{neg,pos}}/cv*.txt files")
    return documents


def split_folds(documents: Sequence[Document], test_fold: int):
    """(train, test) by file-name prefix: fold `test_fold` is the test set."""
    check(
        0 <= test_fold < NUM_FOLDS,
        f"data.fold={test_fold} must be in [0, {NUM_FOLDS - 1}]",
    )
    train = [d for d in documents if polarity_fold(d.name) != test_fold]
    test = [d for d in documents if polarity_fold(d.name) == test_fold]
    return train, test


# ---- Raw text (TFDS reviews) -------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def split_sentences(text: str) -> list[str]:
    """Sentences of raw review text: HTML line breaks are breaks; a sentence ends at . ! ?
    followed by space and a capital letter or digit."""
    text = re.sub(r"<br\s*/?>", "\n", text, flags=re.IGNORECASE)
    pieces = []
    for line in text.splitlines():
        pieces += [s.strip() for s in _SENTENCE_END.split(line) if s.strip()]
    return pieces


def tokenize(sentence: str) -> tuple[str, ...]:
    """Lower-cased words (with a clitic such as 's or n't's t kept on) and punctuation."""
    return tuple(_TOKEN.findall(html.unescape(sentence).lower()))


def documents_from_text(texts: Sequence[str], labels: Sequence[int], prefix: str):
    """Raw texts -> Documents named prefix_<index>; sentences with no token are dropped."""
    documents = []
    for index, (text, label) in enumerate(zip(texts, labels, strict=True)):
        sentences = tuple(s for s in map(tokenize, split_sentences(text)) if s)
        documents.append(Document(f"{prefix}_{index}", int(label), sentences))
    return documents


# ---- Vocabulary and encoding --------------------------------------------------------------


def build_vocab(documents: Sequence[Document], min_count: int) -> list[str]:
    """[PAD, OOV, words seen >= min_count times, most frequent first (ties by word)]."""
    check(min_count >= 1, f"data.min_count={min_count} must be >= 1")
    counts = collections.Counter(w for d in documents for s in d.sentences for w in s)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return [PAD, OOV, *words]


@dataclasses.dataclass(frozen=True)
class Encoded:
    tokens: np.ndarray  # int32 (N, max_sentences, max_words); 0 = padding
    labels: np.ndarray  # int32 (N,)
    num_tokens: int  # words in the documents
    num_kept: int  # words that fit the limits

    @property
    def truncated_share(self) -> float:
        return 1.0 - self.num_kept / max(self.num_tokens, 1)


KEEP_SENTENCES = ("first", "last")


def first_read_sentence(num_sentences: int, max_sentences: int, keep: str) -> int:
    """Index of the first of the `max_sentences` sentences read from a document of
    `num_sentences`: 0 when keeping the first ones, else where the last ones start."""
    check_choice("data.keep_sentences", keep, KEEP_SENTENCES)
    return 0 if keep == "first" else max(0, num_sentences - max_sentences)


def encode(
    documents: Sequence[Document],
    vocab: Sequence[str],
    max_sentences: int,
    max_words: int,
    keep: str = "first",
) -> Encoded:
    """Token ids: `max_sentences` sentences of each document (its first ones, or with
    keep="last" its last ones, where reviews give their verdict), the first `max_words`
    words of each; unknown words -> OOV id 1."""
    check(max_sentences >= 1, f"data.max_sentences={max_sentences} must be >= 1")
    check(max_words >= 1, f"data.max_words={max_words} must be >= 1")
    ids = {w: i for i, w in enumerate(vocab)}
    oov = ids[OOV]
    tokens = np.zeros((len(documents), max_sentences, max_words), np.int32)
    num_tokens = 0
    for row, document in enumerate(documents):
        num_tokens += sum(len(s) for s in document.sentences)
        first = first_read_sentence(len(document.sentences), max_sentences, keep)
        for index, sentence in enumerate(document.sentences[first : first + max_sentences]):
            kept = sentence[:max_words]
            tokens[row, index, : len(kept)] = [ids.get(w, oov) for w in kept]
    return Encoded(
        tokens=tokens,
        labels=np.array([d.label for d in documents], np.int32),
        num_tokens=num_tokens,
        num_kept=int(np.count_nonzero(tokens)),
    )
