"""Images of any size and mode as fixed-size uint8 arrays, decoded one at a time.

`fit` makes every picture `size` x `size` x `channels`: for eval (and training without
random crops) the shorter side is resized to `size` and the centre cut out; a training
draw takes a random resized crop (a random area share in `crop_scale` and aspect ratio
in [3/4, 4/3], Inception-style) from the draw's own generator, so the pixels follow
from (seed, batch, row) alone. `ImageFileSource` reads files (an image folder).
"""

import math
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxdl.data.pipeline import ExampleSource
from jaxdl.errors import DataError, check, check_choice

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# The keys of every source whose images are fitted (image folders, TFDS image sets).
FIT_KEYS = dict(
    image_size=64,
    channels=3,  # 1 (grey) or 3 (RGB)
    random_crop=False,  # training: random resized crops (area share in crop_scale)
    crop_scale=(0.35, 1.0),
)
_MODES = {1: "L", 3: "RGB"}
_RESAMPLE = Image.Resampling.BILINEAR


def open_image(path, channels: int) -> Image.Image:
    """The decoded image at `path` in `channels` (grey, RGBA and palette images are
    converted); a file that is not a whole image is a DataError naming it."""
    try:
        with Image.open(path) as image:
            image.load()  # decodes now: a truncated file fails here, not later
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")  # (PIL's advice for palette transparency)
            return image.convert(_MODES[channels])
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: not a readable image ({e}); replace or remove it") from e


def check_fit_keys(dcfg) -> None:
    """FIT_KEYS' values in config.data make sense (one line each otherwise)."""
    check(dcfg.image_size > 0, f"data.image_size={dcfg.image_size} must be positive")
    check_choice("data.channels", dcfg.channels, (1, 3))
    low, high = dcfg.crop_scale
    check(0 < low <= high <= 1, f"data.crop_scale={tuple(dcfg.crop_scale)} must be in (0, 1]")


def as_image(array: np.ndarray, channels: int) -> Image.Image:
    """A decoded uint8 image array (H, W[, 1 | 3 | 4]) as a PIL image in `channels`."""
    array = np.asarray(array, np.uint8)
    array = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
    return Image.fromarray(array).convert(_MODES[channels])


def _random_box(width: int, height: int, rng: np.random.Generator, crop_scale) -> tuple:
    """A random crop box (left, top, right, bottom): area share in crop_scale, aspect
    in [3/4, 4/3]; the centred largest square after 10 misses."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*crop_scale)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def fit(
    image: Image.Image, size: int, draw: int | None = None, crop_scale=(0.35, 1.0)
) -> np.ndarray:
    """`image` as a (size, size, channels) uint8 array (see the module doc); an image
    already of that size is kept as it is without a draw."""
    width, height = image.size
    if draw is not None:
        box = _random_box(width, height, np.random.default_rng(draw), crop_scale)
        image = image.resize((size, size), _RESAMPLE, box=box)
    elif (width, height) != (size, size):
        scale = size / min(width, height)
        new = (max(size, round(width * scale)), max(size, round(height * scale)))
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        image = image.resize(new, _RESAMPLE).crop((left, top, left + size, top + size))
    array = np.asarray(image, np.uint8)
    return array[..., None] if array.ndim == 2 else array


class ImageFileSource(ExampleSource):
    """Labelled image files, decoded and fitted on demand (picklable: a list of paths).
    `random`: training draws take random resized crops."""

    def __init__(
        self,
        paths: list[str],
        labels: np.ndarray,
        size: int,
        channels: int,
        random: bool = False,
        crop_scale=(0.35, 1.0),
    ):
        self.paths = paths
        self.labels = np.asarray(labels, np.int32)
        self.num_examples = len(paths)
        self.size = size
        self.channels = channels
        self.random = random
        self.crop_scale = tuple(crop_scale)

    def example(self, index: int, draw: int | None) -> dict:
        image = open_image(self.paths[index], self.channels)
        draw = draw if self.random else None
        return {
            "image": fit(image, self.size, draw, self.crop_scale),
            "label": self.labels[index],
        }


def list_class_folders(split_dir: Path, class_names: list[str] | None = None) -> tuple:
    """(paths, labels, class names) of `split_dir/<class>/<image>`: classes are the
    sorted folder names (or `class_names`, those of the training split); images sorted
    by name. An empty split, a class folder without images or a class the training split
    lacks is a DataError naming the folder."""
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} is not a folder (expected {split_dir}/<class>/<image>)")
    folders = sorted(p for p in split_dir.iterdir() if p.is_dir())
    if not folders:
        raise DataError(f"{split_dir} has no class folders (expected {split_dir}/<class>/<image>)")
    names = class_names if class_names is not None else [p.name for p in folders]
    paths, labels = [], []
    for folder in folders:
        if folder.name not in names:
            raise DataError(
                f"{folder}: class {folder.name!r} is not one of the training classes {names}"
            )
        files = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        paths += files
        labels += [names.index(folder.name)] * len(files)
    return paths, np.asarray(labels, np.int32), names
