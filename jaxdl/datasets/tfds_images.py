"""Any TFDS image-classification set, of any image size, streamed: examples are read one
at a time from TFDS's random-access data source (ArrayRecord; a set TFDS lacks is
downloaded and prepared in that format) and fitted to `data.image_size` square with
`data.channels` as image folders are (data/images.py), never stacked whole.

    --config.data.name=tfds --config.data.tfds_name=imagenette --config.data.image_size=64
"""

import numpy as np

from jaxdl import registry
from jaxdl.data import images, inputs, sources
from jaxdl.data.pipeline import ExampleSource
from jaxdl.errors import check


class TFDSImageSource(ExampleSource):
    """One split of a TFDS image set (picklable: a worker opens its own data source)."""

    def __init__(
        self, name: str, split: str, size: int, channels: int, random=False, crop_scale=(0.35, 1.0)
    ):
        self.name, self.split = name, split
        self.size, self.channels = size, channels
        self.random, self.crop_scale = random, tuple(crop_scale)
        self._source = None
        self.num_examples = len(self._examples())

    def _examples(self):
        if self._source is None:
            _, self._source = sources.tfds_data_source(self.name, self.split, "")
        return self._source

    def __getstate__(self):
        return {**self.__dict__, "_source": None}

    def example(self, index: int, draw: int | None) -> dict:
        example = self._examples()[index]
        image = images.as_image(example["image"], self.channels)
        return {
            "image": images.fit(image, self.size, draw if self.random else None, self.crop_scale),
            "label": np.int32(example["label"]),
        }


@registry.source(
    "tfds",
    yields=("image", "label"),
    provides=("class_names", "image_shape"),
    tfds_name="",  # the TFDS name: imagenette, oxford_flowers102, food101, ...
    train_split="train",
    eval_split="test",
    **images.FIT_KEYS,
)
def build(dcfg, seed: int, process_index: int, process_count: int) -> inputs.Input:
    check(dcfg.tfds_name != "", "data.tfds_name is not set: a TFDS image set's name")
    images.check_fit_keys(dcfg)
    builder, _ = sources.tfds_data_source(dcfg.tfds_name, dcfg.train_split, "")
    make = lambda split, random: TFDSImageSource(
        dcfg.tfds_name, split, dcfg.image_size, dcfg.channels, random, dcfg.crop_scale
    )
    info = {
        "origin": f"TFDS {builder.data_dir}",
        "tfds_name": dcfg.tfds_name,
        "class_names": list(builder.info.features["label"].names),
        "image_shape": [dcfg.image_size, dcfg.image_size, dcfg.channels],
    }
    return inputs.image_input(
        dcfg,
        make(dcfg.train_split, dcfg.random_crop),
        make(dcfg.eval_split, False),
        info,
        seed,
        process_index,
        process_count,
    )
