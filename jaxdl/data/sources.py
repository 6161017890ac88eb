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
DOWNLOAD_RETRIES = 3  # of one TFDS download request
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
    # name/version/ or, for builders with configs (imdb_reviews), name/config/version/
    return any((_tfds_data_dir() / name).glob("**/dataset_info.json"))


def _tfds_builder(name: str):
    """TFDS's builder of `name`, prepared. A set TFDS already holds is read in the format
    it was prepared in; one it lacks is downloaded and prepared as ArrayRecord (random
    access, read without TensorFlow: what `tfds.data_source` prepares)."""
    import tensorflow_datasets as tfds  # slow to import; only the TFDS path needs it
    from tensorflow_datasets.core.download import downloader

    # TFDS retries a failed request 10 times with exponential backoff: 3.5 minutes before
    # an offline machine hears why. Three retries still ride out a brief network fault.
    downloader.MAX_RETRIES = min(downloader.MAX_RETRIES, DOWNLOAD_RETRIES)
    # TFDS imports its builder modules lazily: until these are, tfds.builder() does not
    # know some of their sets (yelp_polarity_reviews).
    import tensorflow_datasets.image_classification
    import tensorflow_datasets.text

    builder = tfds.builder(name)
    if not builder.is_prepared():
        builder = tfds.builder(name, file_format="array_record")
        builder.download_and_prepare()
    return builder


def _read_split(builder, split: str, keys: tuple[str, ...]) -> dict:
    """The `keys` features of every example of one split: a sequence of values each (numpy
    arrays; text as bytes or str). Random-access formats (ArrayRecord) are read as a data
    source, without TensorFlow; others (TFRecord, TFDS's default) through tf.data."""
    from tensorflow_datasets.core import file_adapters

    if builder.info.file_format in file_adapters.FileFormat.with_random_access():
        source = builder.as_data_source(split=split)
        examples = [source[i] for i in range(len(source))]
        return {key: [example[key] for example in examples] for key in keys}
    import tensorflow as tf
    import tensorflow_datasets as tfds

    tf.config.set_visible_devices([], "GPU")  # keep accelerators for JAX
    batch = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    return {key: batch[key] for key in keys}


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _read_tfds(name: str, splits: tuple[str, ...], keys: tuple[str, ...], data_dir: str):
    """(builder, {split: features}) of a TFDS set; any TFDS failure (not downloadable, no
    network, no TensorFlow to prepare it) is one DatasetNotFoundError line."""
    try:
        builder = _tfds_builder(name)
        return builder, {split: _read_split(builder, split, keys) for split in splits}
    except Exception as e:  # TFDS raises many types; all mean "not available here"
        reason = f"TFDS failed: {type(e).__name__}: {_first_line(e)}"
        raise DatasetNotFoundError(
            _not_found_message(name, "/".join(splits), data_dir, reason)
        ) from e


def tfds_data_source(name: str, split: str, data_dir: str = ""):
    """(builder, TFDS's random-access source of one split): examples read one at a time,
    the set prepared as ArrayRecord if TFDS lacks it; any failure is one line."""
    try:
        builder = _tfds_builder(name)
        return builder, builder.as_data_source(split=split)
    except Exception as e:  # TFDS raises many types; all mean "not available here"
        reason = f"TFDS failed: {type(e).__name__}: {_first_line(e)}"
        raise DatasetNotFoundError(_not_found_message(name, split, data_dir, reason)) from e


def _load_tfds(name: str, split: str, data_dir: str) -> Dataset:
    builder, read = _read_tfds(name, (split,), ("image", "label"), data_dir)
    columns = read[split]
    return Dataset(
        arrays={
            "image": np.asarray(np.stack(columns["image"]), np.uint8),
            "label": np.asarray(columns["label"], np.int32),
        },
        class_names=tuple(builder.info.features["label"].names),
        origin=f"TFDS {builder.data_dir}",
    )


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [""])[0][:160]


def _not_found_message(name: str, split: str, data_dir: str, reason: str) -> str:
    """One line: where the set was looked for, why TFDS could not give it, how to provide it."""
    tfds_dir = _tfds_data_dir()
    local = local_data_dir(data_dir)
    copies = {**{n: f[0] for n, f in IDX_FOLDERS.items()}, **_LOCAL_TEXT_HINTS}
    where = f"TFDS {tfds_dir}"
    if name in copies:
        where = f"{local} (a local copy) and {where}"
    provide = (
        f"to download it, pip install -e '.[tfds]' (TensorFlow prepares it) and run once "
        f"online; or copy a prepared {name}/ from another machine's TFDS dir into {tfds_dir} "
        f"(TFDS_DATA_DIR=DIR names another)"
    )
    if name in copies:
        provide = (
            f"put a copy in {local / copies[name]} (or pass --config.data.data_dir=DIR, or "
            f"set {DATA_DIR_ENV}), or {provide}"
        )
    return f"data set {name!r} split {split!r} not found in {where} ({reason}); {provide}"


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
_LOCAL_TEXT_HINTS = {n: f"{dirs[0]}/{file}" for n, (dirs, file) in _TEXT_FOLDERS.items()}


def _load_text_tfds(name: str, data_dir: str) -> tuple[str, str]:
    # TFDS cuts the one text into train | validation | test; joined, it is the file.
    splits = ("train", "validation", "test")
    builder, read = _read_tfds(name, splits, ("text",), data_dir)
    text = "".join(_text(value) for split in splits for value in read[split]["text"])
    return text, f"TFDS {builder.data_dir}"


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
    builder, read = _read_tfds(name, (split,), ("text", "label"), data_dir)
    texts = [_text(value) for value in read[split]["text"]]
    labels = np.asarray(read[split]["label"], np.int32)
    class_names = tuple(builder.info.features["label"].names)
    return texts, labels, class_names, f"TFDS {builder.data_dir}"
