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
from jaxdl.errors import DataError, check


@registry.source(
    "image_folder",
    yields=("image", "label"),
    provides=("class_names", "image_shape"),
    path="",
    train_split="train",
    eval_split="test",
    **images.FIT_KEYS,
)
def build(dcfg, seed: int, process_index: int, process_count: int) -> inputs.Input:
    check(dcfg.path != "", "data.path is not set: the folder holding <split>/<class>/<image>")
    images.check_fit_keys(dcfg)
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
