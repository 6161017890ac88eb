"""Small generated data of each kind a task reads, written where asked, as the `data`
section of a config that reads it: what `check_model` / `check_task` train on, and the
pytest plugin's fixtures. The sets are tiny (a few dozen examples) and made in
milliseconds; their contents are learnable but meaningless (jaxdl/data/synthetic.py)."""

from pathlib import Path

from jaxdl import registry
from jaxdl.data import synthetic

# A batch the checks split in two (halves, micro-batches) and over 1, 2 or 4 devices.
BATCH_SIZE = 8


def images(directory: str | Path, image_size: int = 16, channels: int = 1) -> dict:
    """Three classes of `image_size` square images (train: 8 each, test: 4 each) in an
    image folder; the data section reads them."""
    root = Path(directory) / "images"
    if not root.exists():
        synthetic.write_image_folder(root, {"train": 8, "test": 4}, sizes=(20, 20))
    return dict(
        name="image_folder",
        path=str(root),
        image_size=image_size,
        channels=channels,
        batch_size=BATCH_SIZE,
        eval_batch_size=BATCH_SIZE,
    )


def tokens(directory: str | Path, window: int = 16) -> dict:
    """A text file of 4,000 characters for a language model."""
    path = Path(directory) / "text.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(synthetic.text(4000))
    return dict(
        name="text_files",
        path=str(path),
        window=window,
        eval_fraction=0.2,
        batch_size=BATCH_SIZE,
        eval_batch_size=BATCH_SIZE,
    )


def documents(directory: str | Path) -> dict:
    """A CSV of 64 labelled reviews (`text`, `label`) for a document classifier."""
    path = Path(directory) / "documents.csv"
    if not path.exists():
        synthetic.write_document_table(path, synthetic.document_rows(64))
    return dict(
        name="document_table",
        path=str(path),
        eval_fraction=0.25,
        max_sentences=4,
        max_words=8,
        min_count=1,
        batch_size=BATCH_SIZE,
        eval_batch_size=BATCH_SIZE,
    )


# What each `needs` key of a task is given (the keys data sources provide).
_BY_NEED = {"class_names": images, "image_shape": images, "vocab": tokens, "words": documents}


def for_task(task: str, directory: str | Path) -> dict:
    """The generated data section that task `task` (a registered name) trains on."""
    need = registry.lookup("task", task).needs
    if need not in _BY_NEED:
        raise ValueError(
            f"no generated data gives {need!r} (task {task!r}): pass check_task a config "
            "whose data section reads a small set of yours"
        )
    return _BY_NEED[need](directory)
