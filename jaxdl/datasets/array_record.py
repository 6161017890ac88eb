"""A set prepared as ArrayRecord files by `launch/prepare_data.py` (from any source: an
image folder, a TFDS set, ...), read example by example with random access: for sets too
large to hold in memory or to decode from JPEG every epoch.

    launch/prepare_data.py --config=experiments/fashion_cnn.py \
        --config.data.name=image_folder --config.data.path=PHOTOS --out=PREPARED
    launch/train.py ... --config.data.name=array_record --config.data.path=PREPARED

Its examples and info are those of the source it was prepared from (eval's form: no
random crops).
"""

from pathlib import Path

from jaxdl import registry
from jaxdl.data import inputs, records
from jaxdl.data.pipeline import ShuffledBatches, held_if_small
from jaxdl.errors import DataError, check


@registry.source(
    "array_record",
    yields=(),  # those of the source it was prepared from (info.json's fields)
    provides=(),  # likewise (info.json)
    path="",  # a folder written by launch/prepare_data.py
    train_split="train",
    eval_split="test",
)
def build(dcfg, seed: int, process_index: int, process_count: int) -> inputs.Input:
    check(dcfg.path != "", "data.path is not set: a folder written by launch/prepare_data.py")
    root = Path(dcfg.path).expanduser()
    if not root.is_dir():
        raise DataError(f"data.path={dcfg.path!r} is not a folder")
    prepared = records.read_info(root)
    fields, info = prepared["fields"], prepared["info"]
    train, evals = (
        held_if_small(
            records.RecordSource(root / f"{split}{records.SUFFIX}", fields),
            dcfg.hold_mb * 2**20,
        )
        for split in (dcfg.train_split, dcfg.eval_split)
    )
    return inputs.Input(
        train=ShuffledBatches(train, dcfg.batch_size, seed, process_index, process_count),
        eval=evals,
        info={
            **info,
            "name": dcfg.name,
            "origin": f"ArrayRecord {root} (prepared from {info.get('origin')})",
            "num_train": train.num_examples,
            "num_eval": evals.num_examples,
        },
        items_per_batch=dcfg.batch_size,
        item_unit=prepared.get("item_unit", "ex"),
    )
