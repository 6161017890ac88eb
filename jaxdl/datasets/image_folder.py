"""Image folders, the TFDS / torchvision layout: `data.path/<split>/<class>/<image>`
(png, jpg, jpeg; any size and mode). Class names are the training split's folder names,
sorted. Images are decoded per batch (in `data.workers` processes when > 0), never held
whole, and fitted to `data.image_size` square with `data.channels` (data/images.py):
resized and centre-cropped, or with `data.random_crop` a random resized crop in
training.

    --config.data.name=image_folder --config.data.path=DIR --config.data.image_size=64
"""

from pathlib import Path

from jaxdl import registry
from jaxdl.data import images, inputs
from jaxdl.errors import DataError, check, check_choice


@registry.source(
    "image_folder",
    yields=("image", "label"),
    provides=("class_names", "image_shape"),
    path="",
    train_split="train",
    eval_split="test",
    image_size=64,
    channels=3,  # 1 (grey) or 3 (RGB)
    random_crop=False,  # training: random resized crops (area share in crop_scale)
    crop_scale=(0.35, 1.0),
)
def build(dcfg, seed: int, process_index: int, process_count: int) -> inputs.Input:
    check(dcfg.path != "", "data.path is not set: the folder holding <split>/<class>/<image>")
    check(dcfg.image_size > 0, f"data.image_size={dcfg.image_size} must be positive")
    check_choice("data.channels", dcfg.channels, (1, 3))
    low, high = dcfg.crop_scale
    check(0 < low <= high <= 1, f"data.crop_scale={tuple(dcfg.crop_scale)} must be in (0, 1]")
    root = Path(dcfg.path).expanduser()
    if not root.is_dir():
        raise DataError(f"data.path={dcfg.path!r} is not a folder")
    train_paths, train_labels, names = images.list_class_folders(root / dcfg.train_split)
    eval_paths, eval_labels, _ = images.list_class_folders(root / dcfg.eval_split, names)
    size, channels = dcfg.image_size, dcfg.channels
    train = images.ImageFileSource(
        train_paths, train_labels, size, channels, dcfg.random_crop, dcfg.crop_scale
    )
    evals = images.ImageFileSource(eval_paths, eval_labels, size, channels)
    info = {
        "origin": f"image folder {root}",
        "class_names": names,
        "image_shape": [size, size, channels],
    }
    return inputs.image_input(dcfg, train, evals, info, seed, process_index, process_count)
