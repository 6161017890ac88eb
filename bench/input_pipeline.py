"""Bring-your-own-data input: how fast it delivers, how much memory it holds, how soon a
huge set starts, and whether an image folder trains as well as the IDX copy.

  1. delivery: images/s of device batches (128 images, 64x64x3) from a generated folder
     of JPEGs (stored at 64x64, and at 256x256 resized to 64) with 0, 1 and 2 worker
     processes, and from the same set prepared as ArrayRecord; beside them the default
     CNN's bare training rate (images/s) on Fashion-MNIST;
  2. memory: peak RSS of a training run (image folder, workers=0) as the set grows
     from 1x to 4x;
  3. start: seconds of a 2-step launch on a generated ArrayRecord set of 1M examples
     against one of 10k (no pass over the set at start: the two should match);
  4. quality: Fashion-MNIST written as a PNG folder trains with the default recipe
     (experiments/fashion_cnn.py) to the IDX copy's accuracy: one seed each, one after
     another, held in memory (its default at this size) and streamed, and the folder's
     speed as a fraction of the IDX path's.

    python bench/input_pipeline.py [--images=20000] [--quick]

Writes bench/results/input_pipeline.md. Run it on a quiet machine.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import common  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from trainer_overhead import bare_rate, experiment_config  # noqa: E402

from jaxdl import configs, data  # noqa: E402
from jaxdl.data import records, sources, synthetic  # noqa: E402
from jaxdl.train import read_metrics  # noqa: E402


def delivery_rate(dcfg, workers: int, batches: int, repeats: int) -> float:
    """Median images/s of `batches` device batches after 3 warm-up ones."""
    inputs = data.build_input(dcfg, seed=0)
    rates = []
    for repeat in range(repeats):
        start = repeat * (batches + 3)
        prefetch = data.Prefetcher(inputs.train, start, 4, jax.device_put, workers)
        try:
            for _ in range(3):
                next(prefetch)
            began = time.perf_counter()
            for _ in range(batches):
                _, batch = next(prefetch)
            jax.block_until_ready(batch)
            rates.append(batches * dcfg.batch_size / (time.perf_counter() - began))
        finally:
            prefetch.close()
    return statistics.median(rates)


def prepare(folder: Path, out: Path, image_size: int, channels: int = 3) -> None:
    common.timed_run(
        [
            sys.executable,
            str(ROOT / "launch/prepare_data.py"),
            f"--config={ROOT / 'experiments/fashion_cnn.py'}",
            "--config.data.name=image_folder",
            f"--config.data.path={folder}",
            f"--config.data.image_size={image_size}",
            f"--config.data.channels={channels}",
            f"--out={out}",
            "--workers=2",
        ]
    )


def peak_rss_mib(command: list[str]) -> float:
    """Peak RSS of `command` (run in a fresh child of a fresh Python: only it counted)."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip()) / 1024


def train_command(workdir: Path, *overrides: str, experiment="fashion_cnn_tiny") -> list[str]:
    return [
        sys.executable,
        str(ROOT / "launch/train.py"),
        f"--config={ROOT / 'experiments' / (experiment + '.py')}",
        f"--workdir={workdir}",
        "--config.train.plot=False",
        *overrides,
    ]


def synthetic_records(out: Path, count: int) -> None:
    """`count` random 28x28x1 examples of 10 classes as a prepared ArrayRecord folder."""
    rng = np.random.default_rng(0)
    image = np.zeros((28, 28, 1), np.uint8)
    example = {"image": image, "label": np.int32(0)}
    fields = records.fields_of(example)
    out.mkdir(parents=True)

    def examples(n):
        for i in range(n):
            if i % 4096 == 0:
                block = rng.integers(0, 256, (4096, 28, 28, 1), dtype=np.uint8)
            yield {"image": block[i % 4096], "label": np.int32(i % 10)}

    records.write_split(out / "train.array_record", examples(count), fields)
    records.write_split(out / "test.array_record", examples(1000), fields)
    info = {
        "origin": "generated",
        "class_names": [str(c) for c in range(10)],
        "image_shape": [28, 28, 1],
    }
    (out / records.INFO_FILE).write_text(json.dumps({"fields": fields, "info": info}))


def final_accuracy(workdir: Path) -> float:
    return [r for r in read_metrics(workdir) if "eval/accuracy" in r][-1]["eval/accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="JPEGs per folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = parser.parse_args()
    quick = args.quick
    per_class = args.images // 10 if not quick else 30
    batches = 40 if not quick else 4
    lines = ["# Input pipeline", "", common.machine_line(), ""]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        classes = [f"c{i}" for i in range(10)]
        print("writing the JPEG folders ...", flush=True)
        small = synthetic.write_image_folder(
            tmp / "jpeg64",
            {"train": per_class, "test": 2},
            classes,
            (64, 64),
            ("RGB",),
            (".jpg",),
        )
        large = synthetic.write_image_folder(
            tmp / "jpeg256",
            {"train": per_class, "test": 2},
            classes,
            (256, 256),
            ("RGB",),
            (".jpg",),
        )
        prepare(small, tmp / "records64", 64)

        # ---- 1. Delivery --------------------------------------------------------------
        rows = []
        for label, folder in (("JPEG 64x64", small), ("JPEG 256x256 -> 64", large)):
            for workers in (0, 1, 2):
                dcfg = configs.section(
                    "data",
                    "image_folder",
                    path=str(folder),
                    image_size=64,
                    batch_size=128,
                    hold_mb=0,
                )
                rate = delivery_rate(dcfg, workers, batches, args.repeats)
                rows.append((label, str(workers), rate))
                print(rows[-1], flush=True)
        for label, source, options in (
            ("ArrayRecord 64x64", "array_record", dict(path=str(tmp / "records64"), hold_mb=0)),
            (
                "JPEG 64x64, held in memory (data.hold_mb)",
                "image_folder",
                dict(path=str(small), image_size=64),
            ),
        ):
            dcfg = configs.section("data", source, batch_size=128, **options)
            began = time.perf_counter()
            data.build_input(dcfg, seed=0)
            build_s = time.perf_counter() - began
            rate = delivery_rate(dcfg, 0, batches, args.repeats)
            rows.append((f"{label} (built in {build_s:.1f} s)", "0", rate))
        steps = 400 if not quick else 210  # bare_rate leaves its first 200 out
        cnn = experiment_config("cnn", steps)
        cnn_rate = bare_rate(cnn, steps) * cnn.data.batch_size
        lines += [
            f"## Delivery: device batches of 128 images, {10 * per_class} training images "
            f"(median of {args.repeats} runs of {batches} batches)",
            "",
            "| source | workers | images/s |",
            "|---|---|---|",
            *(f"| {s} | {w} | {r:,.0f} |" for s, w, r in rows),
            f"| default CNN training step (Fashion-MNIST 28x28, bare) | - | {cnn_rate:,.0f} |",
            "",
        ]

        # ---- 2. Memory ----------------------------------------------------------------
        memory = []
        for factor in (1, 2, 4):
            folder = synthetic.write_image_folder(
                tmp / f"grow{factor}",
                {"train": factor * per_class // 2, "test": 2},
                classes,
                (64, 64),
                ("RGB",),
                (".jpg",),
            )
            command = train_command(
                tmp / f"run_grow{factor}",
                "--config.data.name=image_folder",
                f"--config.data.path={folder}",
                "--config.data.image_size=64",
                "--config.data.hold_mb=0",  # streamed, whatever its size
                "--config.train.num_steps=60",
                "--config.data.eval_batch_size=20",
            )
            memory.append((factor, 10 * factor * per_class // 2, peak_rss_mib(command)))
            print(memory[-1], flush=True)
        lines += [
            "## Peak host memory of a 60-step training run on an image folder (streamed: "
            "hold_mb=0, workers=0)",
            "",
            "| set size | images | peak RSS MiB |",
            "|---|---|---|",
            *(f"| {f}x | {n:,} | {m:,.0f} |" for f, n, m in memory),
            "",
        ]

        # ---- 3. Start on a huge set ---------------------------------------------------------
        starts = []
        for count in (10_000, 1_000_000 if not quick else 20_000):
            out = tmp / f"records_{count}"
            began = time.perf_counter()
            synthetic_records(out, count)
            written = time.perf_counter() - began
            walls = [
                common.timed_run(
                    train_command(
                        tmp / f"run_records_{count}_{r}",
                        "--config.data.name=array_record",
                        f"--config.data.path={out}",
                        "--config.train.num_steps=2",
                    )
                )
                for r in range(args.repeats)
            ]
            starts.append((count, written, statistics.median(walls)))
            print(starts[-1], flush=True)
        lines += [
            "## A 2-step launch (fashion_cnn_tiny) on a generated ArrayRecord set",
            "",
            "| examples | seconds to write the set | seconds of the launch (median) |",
            "|---|---|---|",
            *(f"| {n:,} | {w:.1f} | {s:.2f} |" for n, w, s in starts),
            "",
        ]

        # ---- 4. Fashion-MNIST as PNGs ---------------------------------------------------------
        if not quick:
            png = tmp / "fashion_png"
            for split, stem in (("train", "train"), ("test", "test")):
                arrays = sources.load("fashion_mnist", stem).arrays
                names = sources.CLASS_NAMES["fashion_mnist"]
                for i, (image, label) in enumerate(
                    zip(arrays["image"], arrays["label"], strict=True)
                ):
                    folder = png / split / f"{label}_{names[label].replace('/', '-')}"
                    folder.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(image[..., 0]).save(folder / f"{i:05d}.png")
            runs = {}
            folder_args = [
                "--config.data.name=image_folder",
                f"--config.data.path={png}",
                "--config.data.image_size=28",
                "--config.data.channels=1",
            ]
            for label, overrides in (
                ("IDX (in memory)", []),
                (
                    "PNG folder (held: 55 MB < data.hold_mb)",
                    [*folder_args, "--config.data.workers=2"],
                ),
                (
                    "PNG folder, streamed (hold_mb=0, workers=2)",
                    [*folder_args, "--config.data.hold_mb=0", "--config.data.workers=2"],
                ),
            ):
                workdir = tmp / f"fashion_{len(runs)}"
                wall = common.train(
                    "experiments/fashion_cnn.py", workdir, ["--config.train.plot=False", *overrides]
                )
                runs[label] = (final_accuracy(workdir), wall)
                print(label, runs[label], flush=True)
            idx_wall = runs["IDX (in memory)"][1]
            lines += [
                "## Fashion-MNIST, the default recipe (experiments/fashion_cnn.py), seed 0",
                "",
                "| data | test accuracy | wall s | speed vs IDX |",
                "|---|---|---|---|",
                *(
                    f"| {k} | {a:.2%} | {w:.1f} | {idx_wall / w:.2f}x |"
                    for k, (a, w) in runs.items()
                ),
                "",
            ]
    text = "\n".join(lines)
    print(text)
    if not quick:
        (common.RESULTS / "input_pipeline.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
