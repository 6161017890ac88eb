"""Character-level text for the language model: Tiny Shakespeare (a local copy or
TFDS), and any UTF-8 file or folder of files of your own (`text_files`: the files of
a folder are read in sorted order, joined). The tail `data.eval_fraction` is the eval
text; `data.window` characters per stream per step (truncated BPTT).

A text of more than IN_MEMORY_BYTES is read in pieces: its character ids are written
once to a cache file (`$JAXDL_TOKEN_CACHE`, else ~/.cache/jaxdl/tokens; keyed by the
files' paths, sizes and modification times) and memory-mapped, so training reads only
the windows it needs. Its eval text is still held whole: keep `data.eval_fraction`
small for such a text.
"""

import codecs
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from jaxdl import registry
from jaxdl.data import inputs, sources, text
from jaxdl.errors import DataError, check

STREAMS = dict(window=128, eval_fraction=0.1)
IN_MEMORY_BYTES = 256 * 2**20
_PIECE = 16 * 2**20  # bytes decoded at a time
TOKEN_CACHE_ENV = "JAXDL_TOKEN_CACHE"


@registry.source(
    "tiny_shakespeare",
    yields=("inputs", "targets", "reset"),
    provides=("vocab",),
    source="auto",
    data_dir="",
    **STREAMS,
)
def build_shakespeare(dcfg, seed: int, process_index: int, process_count: int):
    corpus, origin = sources.load_text(dcfg.name, dcfg.source, dcfg.data_dir)
    vocab = text.CharVocab.of(corpus)
    return inputs.text_input(
        dcfg, vocab.encode(corpus), vocab.chars, origin, seed, process_index, process_count
    )


def text_files(path: Path) -> list[Path]:
    """The file, or every file under the folder (sorted by path, hidden ones left out)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"data.path={str(path)!r} holds no files")
        return files
    if path.is_file():
        return [path]
    raise DataError(f"data.path={str(path)!r} is neither a file nor a folder")


def pieces(files: list[Path]):
    """The files' text in pieces of about _PIECE bytes; a file that is not UTF-8 is a
    DataError naming it and the byte."""
    for file in files:
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        with open(file, "rb") as f:
            while True:
                raw = f.read(_PIECE)
                pending = len(decoder.getstate()[0])  # bytes of a character cut last time
                try:
                    piece = decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as e:
                    raise DataError(
                        f"{file}: not UTF-8 text (byte {offset - pending + e.start}); "
                        "convert it (iconv -t utf-8) or leave it out"
                    ) from e
                offset += len(raw)
                if piece:
                    yield piece
                if not raw:
                    break


def _cache_file(files: list[Path]) -> Path:
    stamp = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:24]
    root = Path(os.environ.get(TOKEN_CACHE_ENV) or Path.home() / ".cache/jaxdl/tokens")
    return root / f"{key}.tokens"


def memory_mapped_tokens(files: list[Path]) -> tuple[np.ndarray, str]:
    """(the character ids as a read-only memory map, the vocabulary): two passes over
    the files, the ids written once to the token cache (renamed into place whole)."""
    cache = _cache_file(files)
    vocab_file = cache.with_suffix(".json")
    if not (cache.is_file() and vocab_file.is_file()):
        chars: set[str] = set()
        for piece in pieces(files):
            chars.update(piece)
        vocab = text.CharVocab("".join(sorted(chars)))
        dtype = np.uint16 if vocab.size <= 2**16 else np.int32
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".partial{os.getpid()}")
        with open(partial, "wb") as out:
            for piece in pieces(files):
                out.write(vocab.encode(piece).astype(dtype).tobytes())
        vocab_file.write_text(json.dumps({"vocab": vocab.chars, "dtype": np.dtype(dtype).str}))
        partial.rename(cache)
    saved = json.loads(vocab_file.read_text())
    return np.memmap(cache, np.dtype(saved["dtype"]), mode="r"), saved["vocab"]


@registry.source(
    "text_files",
    yields=("inputs", "targets", "reset"),
    provides=("vocab",),
    path="",  # a UTF-8 file, or a folder of them
    **STREAMS,
)
def build_text_files(dcfg, seed: int, process_index: int, process_count: int):
    check(dcfg.path != "", "data.path is not set: a UTF-8 text file or a folder of them")
    path = Path(dcfg.path).expanduser()
    files = text_files(path)
    if sum(f.stat().st_size for f in files) <= IN_MEMORY_BYTES:
        corpus = "".join(pieces(files))
        vocab = text.CharVocab.of(corpus)
        tokens, chars = vocab.encode(corpus), vocab.chars
    else:
        tokens, chars = memory_mapped_tokens(files)
    origin = f"text {path}"
    return inputs.text_input(dcfg, tokens, chars, origin, seed, process_index, process_count)
