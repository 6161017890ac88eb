"""Prepare a data set as ArrayRecord files, read back with random access:

    python launch/prepare_data.py --config=experiments/fashion_cnn.py \
        --config.data.name=image_folder --config.data.path=PHOTOS --out=PREPARED [--workers=2]

Writes OUT/<split>.array_record for the config's train and eval splits (every example
as the run would read it for eval: decoded, resized, no random crop) and OUT/info.json;
then `--config.data.name=array_record --config.data.path=OUT` trains on it with no
decoding (jaxdl/datasets/array_record.py). Progress and ETA are logged as it goes; a
killed run leaves no readable folder (info.json is written last).
"""

import json
import time
from pathlib import Path

from _tool import define_config_flag, tool_main
from absl import app, flags, logging

define_config_flag()
flags.DEFINE_string("out", None, "Folder to write (new, or empty).")
flags.DEFINE_integer("workers", 0, "Processes that decode examples (0: this one).")
flags.DEFINE_integer("chunk", 256, "Examples per unit of work.")
flags.mark_flags_as_required(["config", "out"])
FLAGS = flags.FLAGS


def _examples(source, split: str, workers: int, chunk: int):
    from jaxdl.data.pipeline import read_chunks

    started = last = time.perf_counter()
    done = 0
    for batch in read_chunks(source, workers, chunk):
        rows = len(next(iter(batch.values())))
        for i in range(rows):
            yield {name: value[i] for name, value in batch.items()}
        done += rows
        now = time.perf_counter()
        if now - last > 5 or done == source.num_examples:
            last = now
            rate = done / max(now - started, 1e-9)
            logging.info(
                "%s: %d of %d examples, %.0f/s, ETA %.0f s",
                split,
                done,
                source.num_examples,
                rate,
                (source.num_examples - done) / rate,
            )


@tool_main
def main():
    import numpy as np

    from jaxdl import configs, data
    from jaxdl.data import records
    from jaxdl.errors import check

    check(FLAGS.workers >= 0, f"--workers={FLAGS.workers} must be >= 0")
    check(FLAGS.chunk > 0, f"--chunk={FLAGS.chunk} must be positive")
    out = Path(FLAGS.out)
    check(not out.exists() or not any(out.iterdir()), f"--out={FLAGS.out} is not empty")
    config = configs.resolve(FLAGS.config)
    check(config.data.name != "array_record", "the config's data is prepared already")
    inputs = data.build_input(config.data, config.seed)
    check(
        isinstance(inputs.train, data.ShuffledBatches),
        f"data.name={config.data.name!r} is read as token streams: nothing to prepare",
    )
    names = (config.data.get("train_split", "train"), config.data.get("eval_split", "test"))
    splits = dict(zip(names, (inputs.train.source, inputs.eval), strict=True))
    first = inputs.eval.read(np.arange(1))
    fields = records.fields_of({name: value[0] for name, value in first.items()})
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, source in splits.items():
        examples = _examples(source, split, FLAGS.workers, FLAGS.chunk)
        counts[split] = records.write_split(out / f"{split}{records.SUFFIX}", examples, fields)
    prepared = {"fields": fields, "info": inputs.info, "item_unit": inputs.item_unit}
    (out / records.INFO_FILE).write_text(json.dumps(prepared, indent=1))
    logging.info("prepared %s: %s", out, ", ".join(f"{s} {n}" for s, n in counts.items()))


if __name__ == "__main__":
    app.run(main)
