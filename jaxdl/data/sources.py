"""Data sets by TFDS name: through TFDS where it has them, else from a local copy.

Every source returns the same thing: a `Dataset` of whole-split numpy arrays
(`image` uint8 NHWC, `label` int32), so the pipeline never knows where data came from.
"""

import dataclasses
import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from jaxdl.errors import DataError, DatasetNotFoundError, check_choice

# Local copies of IDX-format sets (the files TFDS itself downloads for these names).
IDX_FOLDERS = {"fashion_mnist": ("fashion-mnist", "fashion_mnist"), "mnist": ("mnist",)}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASS_NAMES = {
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "mnist": tuple(str(d) for d in range(10)),
}
DATA_DIR_ENV = "JAXDL_DATA_DIR"
# The project's machines keep real data sets beside the repository, in ../shared/data.
SHARED_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One split held in memory."""

    arrays: dict  # name -> np.ndarray, all with the same leading length
    class_names: tuple
    origin: str  # where it was read from, for the log

    @property
    def num_examples(self) -> int:
        return len(next(iter(self.arrays.values())))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (optionally gzipped) of unsigned bytes into an array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path} is damaged ({e}); replace it with a good copy") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetNotFoundError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DatasetNotFoundError(f"{path} is truncated: {data.size} bytes for shape {shape}")
    return data.reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """uint8 `array` as a gzipped IDX file, what read_idx reads (data sets made here)."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def local_data_dir(data_dir: str = "") -> Path:
    """Where local copies are read: the config/flag value, else the env variable, else shared.

    The first one given wins alone, so a run never silently reads a copy from elsewhere.
    """
    return Path(data_dir or os.environ.get(DATA_DIR_ENV, "") or SHARED_DATA_DIR)


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _load_local(name: str, split: str, data_dir: str) -> Dataset | None:
    if name not in IDX_FOLDERS or split not in _IDX_FILES:
        return None
    root = local_data_dir(data_dir)
    for folder in (root, *(root / sub for sub in IDX_FOLDERS[name])):
        files = [_find_file(folder, stem) for stem in _IDX_FILES[split]]
        if all(files):
            images, labels = (read_idx(f) for f in files)
            if len(images) != len(labels):
                raise DatasetNotFoundError(
                    f"{folder}: {len(images)} images but {len(labels)} labels"
                )
            return Dataset(
                arrays={"image": images[..., None], "label": labels.astype(np.int32)},
                class_names=CLASS_NAMES[name],
                origin=f"local copy {folder}",
            )
    return None


def _tfds_data_dir() -> Path:
    return Path(os.environ.get("TFDS_DATA_DIR", Path.home() / "tensorflow_datasets"))


def _tfds_prepared(name: str) -> bool:
    return any((_tfds_data_dir() / name).glob("*/dataset_info.json"))


def _load_tfds(name: str, split: str, data_dir: str) -> Dataset:
    import tensorflow_datasets as tfds  # slow to import; only this path needs it

    try:
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")  # keep accelerators for JAX
        builder = tfds.builder(name)
        builder.download_and_prepare()
        batch = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    except Exception as e:  # TFDS raises many types; all mean "not available here"
        raise DatasetNotFoundError(
            _not_found_message(
                name, split, data_dir, f"TFDS failed: {type(e).__name__}: {_first_line(e)}"
            )
        ) from e
    label_feature = builder.info.features["label"]
    return Dataset(
        arrays={"image": np.asarray(batch["image"]), "label": batch["label"].astype(np.int32)},
        class_names=tuple(label_feature.names),
        origin=f"TFDS {builder.data_dir}",
    )


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [""])[0][:160]


def _not_found_message(name: str, split: str, data_dir: str, reason: str) -> str:
    return (
        f"data set {name!r} split {split!r} not found: looked in {local_data_dir(data_dir)} "
        f"and TFDS "
        f"{_tfds_data_dir()} ({reason}); put the files in one of these dirs, pass "
        f"--config.data.data_dir=DIR or set {DATA_DIR_ENV}"
    )


def load(name: str, split: str, source: str = "auto", data_dir: str = "") -> Dataset:
    """Loads one split of a data set by its TFDS name.

    source: 'tfds' (TFDS only; downloads if it can), 'local' (local copy only), or
    'auto': TFDS when it already has the set prepared, else a local copy, else a TFDS
    download.
    """
    check_choice("data.source", source, ("auto", "local", "tfds"))
    if source == "tfds" or (source == "auto" and _tfds_prepared(name)):
        return _load_tfds(name, split, data_dir)
    dataset = _load_local(name, split, data_dir)
    if dataset is not None:
        return dataset
    if source == "local":
        raise DatasetNotFoundError(_not_found_message(name, split, data_dir, "source=local"))
    return _load_tfds(name, split, data_dir)


# Local copies of text sets: folder names under the data dir, and the file in them.
_TEXT_FOLDERS = {"tiny_shakespeare": (("tinyshakespeare", "tiny_shakespeare"), "input.txt")}
TEXT_DATASETS = tuple(_TEXT_FOLDERS)


def _load_text_tfds(name: str, data_dir: str) -> tuple[str, str]:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name)
        builder.download_and_prepare()
        # TFDS cuts the one text into train | validation | test; joined, it is the file.
        parts = [
            next(iter(tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))["text"]))
            for split in ("train", "validation", "test")
        ]
    except Exception as e:
        raise DatasetNotFoundError(
            _not_found_message(
                name, "all", data_dir, f"TFDS failed: {type(e).__name__}: {_first_line(e)}"
            )
        ) from e
    return b"".join(parts).decode("utf-8"), f"TFDS {builder.data_dir}"


def load_text(name: str, source: str = "auto", data_dir: str = "") -> tuple[str, str]:
    """The whole text of a text data set and where it was read from; sources as `load`."""
    check_choice("data.source", source, ("auto", "local", "tfds"))
    check_choice("data.name", name, TEXT_DATASETS)
    if source == "tfds" or (source == "auto" and _tfds_prepared(name)):
        return _load_text_tfds(name, data_dir)
    folders, filename = _TEXT_FOLDERS[name]
    root = local_data_dir(data_dir)
    for folder in (root, *(root / sub for sub in folders)):
        if (folder / filename).is_file():
            return (folder / filename).read_text(encoding="utf-8"), f"local copy {folder}"
    if source == "local":
        raise DatasetNotFoundError(_not_found_message(name, "all", data_dir, "source=local"))
    return _load_text_tfds(name, data_dir)


def load_reviews_tfds(name: str, split: str, data_dir: str):
    """(texts, labels, class names, origin) of a TFDS text-classification set such as
    imdb_reviews or yelp_polarity_reviews (downloaded and prepared by TFDS if needed)."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name)
        builder.download_and_prepare()
        batch = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    except Exception as e:
        raise DatasetNotFoundError(
            _not_found_message(
                name, split, data_dir, f"TFDS failed: {type(e).__name__}: {_first_line(e)}"
            )
        ) from e
    texts = [t.decode("utf-8", errors="replace") for t in batch["text"]]
    class_names = tuple(builder.info.features["label"].names)
    return texts, batch["label"].astype(np.int32), class_names, f"TFDS {builder.data_dir}"
