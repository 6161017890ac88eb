"""The named image sets of the catalogue: Fashion-MNIST and MNIST (a local IDX copy or
TFDS) and CIFAR-10 (TFDS), each held in memory as whole uint8 arrays (at most 180 MB:
faster than decoding per batch, bench/results/input_pipeline.md)."""

from jaxdl import registry
from jaxdl.data import inputs, sources
from jaxdl.data.pipeline import ArraySource

SPLITS = dict(
    source="auto",  # auto | local | tfds (see jaxdl/data/sources.py)
    data_dir="",  # local copies; else $JAXDL_DATA_DIR, else ../shared/data
    train_split="train",
    eval_split="test",
)


def build(dcfg, seed: int, process_index: int, process_count: int) -> inputs.Input:
    train_set = sources.load(dcfg.name, dcfg.train_split, dcfg.source, dcfg.data_dir)
    eval_set = sources.load(dcfg.name, dcfg.eval_split, dcfg.source, dcfg.data_dir)
    info = {
        "origin": train_set.origin,
        "class_names": list(train_set.class_names),
        "image_shape": list(train_set.arrays["image"].shape[1:]),
    }
    return inputs.image_input(
        dcfg,
        ArraySource(train_set.arrays),
        ArraySource(eval_set.arrays),
        info,
        seed,
        process_index,
        process_count,
    )


for _name in ("fashion_mnist", "mnist", "cifar10"):
    registry.source(
        _name, yields=("image", "label"), provides=("class_names", "image_shape"), **SPLITS
    )(build)
