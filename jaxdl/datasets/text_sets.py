"""Character-level text for the language model: Tiny Shakespeare (a local copy or
TFDS), and any UTF-8 file or folder of files of your own (`text_files`: the files of
a folder are read in sorted order, joined). The tail `data.eval_fraction` is the eval
text; `data.window` characters per stream per step (truncated BPTT)."""

from pathlib import Path

from jaxdl import registry
from jaxdl.data import inputs, sources
from jaxdl.errors import DataError, check

STREAMS = dict(window=128, eval_fraction=0.1)


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
    return inputs.text_input(dcfg, corpus, origin, seed, process_index, process_count)


def read_text_files(path: Path) -> str:
    """The text of a file, or of every file under a folder (sorted by path, hidden ones
    left out), joined; a file that is not UTF-8 is a DataError naming it and where."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"data.path={str(path)!r} holds no files")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"data.path={str(path)!r} is neither a file nor a folder")
    parts = []
    for file in files:
        raw = file.read_bytes()
        try:
            parts.append(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(
                f"{file}: not UTF-8 text (byte {e.start}: {raw[e.start : e.start + 1]!r}); "
                "convert it (iconv -t utf-8) or leave it out"
            ) from e
    return "".join(parts)


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
    corpus = read_text_files(path)
    return inputs.text_input(dcfg, corpus, f"text {path}", seed, process_index, process_count)
