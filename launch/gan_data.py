"""Labelled training data from a class-conditional GAN: its samples as a data set.

    python launch/gan_data.py --workdir=runs/bench/gan/main --out=runs/gan_data/60k \\
        [--num_samples=60000] [--real_per_class=0] [--reject=none|drs|judge --judge=RUN]

Writes OUT/fashion-mnist/ (or OUT/mnist/) in the IDX format of the local copies
(jaxdl/data/sources.py): train = `--num_samples` generated images labelled with the
class they were asked for (i % classes), plus `--real_per_class` real training images of
each class (the first of each, in order); test = the real test set. Any experiment then
trains on it with `--config.data.data_dir=OUT --config.data.source=local`;
bench/gan_data.py measures the classification accuracy score (train on generated data,
test on real) that way.
"""

import shutil
from pathlib import Path

from _tool import define_step_flag, tool_main
from absl import app, flags

flags.DEFINE_string("workdir", None, "Run directory of a class-conditional GAN run.")
flags.DEFINE_string("out", None, "Data directory to write.")
flags.DEFINE_integer("num_samples", 60_000, "Generated training images.")
flags.DEFINE_integer("real_per_class", 0, "Real training images of each class to add.")
flags.DEFINE_integer("seed", 0, "Noise seed.")
flags.DEFINE_enum("reject", "none", ["none", "drs", "judge"], "Rejection of samples.")
flags.DEFINE_string("judge", None, "--reject=judge: a classifier run on the same data.")
define_step_flag()
flags.mark_flags_as_required(["workdir", "out"])
FLAGS = flags.FLAGS


@tool_main
def main():
    import numpy as np

    from jaxdl import data
    from jaxdl.data.sources import IDX_FOLDERS, write_idx
    from jaxdl.errors import check
    from jaxdl.evaluation.gan_judge import Judge, samples
    from jaxdl.tasks.gan import GANTask
    from jaxdl.train.run_info import load_run

    check(FLAGS.num_samples > 0 or FLAGS.real_per_class > 0, "nothing to write")
    check(FLAGS.real_per_class >= 0, f"--real_per_class={FLAGS.real_per_class} must be >= 0")
    config, info, task, state = load_run(FLAGS.workdir, FLAGS.step)
    check(
        isinstance(task, GANTask) and task.conditional,
        f"{FLAGS.workdir} is not a class-conditional GAN run",
    )
    check(FLAGS.reject != "judge" or FLAGS.judge, "--reject=judge needs --judge=RUN")
    dcfg = config.data  # the real data, read as the GAN run read it
    check(dcfg.name in ("fashion_mnist", "mnist"), f"data set {dcfg.name!r} has no IDX layout")
    inputs = data.build_input(dcfg, config.seed)
    train, test = data.read_all(inputs.train.source), data.read_all(inputs.eval)
    images, labels = [], []
    if FLAGS.num_samples:
        judge = Judge(FLAGS.judge) if FLAGS.reject == "judge" else None
        generated, requested, _, acceptance = samples(
            task, state, judge, FLAGS.num_samples, FLAGS.seed, reject=FLAGS.reject
        )
        images.append(generated[..., 0])
        labels.append(requested)
        print(f"{FLAGS.num_samples} generated ({acceptance:.1%} of candidates accepted)")
    if FLAGS.real_per_class:
        rows = np.concatenate(
            [
                np.flatnonzero(train["label"] == c)[: FLAGS.real_per_class]
                for c in range(len(info["class_names"]))
            ]
        )
        images.append(train["image"][rows][..., 0])
        labels.append(train["label"][rows])
        print(f"{len(rows)} real training images")
    folder = Path(FLAGS.out) / IDX_FOLDERS[dcfg.name][0]
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    write_idx(folder / "train-images-idx3-ubyte.gz", np.concatenate(images))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.concatenate(labels))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", test["image"][..., 0])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", test["label"])
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    app.run(main)
