"""Quality vs wall time of the default experiment, as a user runs it.

Runs `launch/train.py --config=experiments/fashion_cnn.py` (as it stands) once per seed,
one after another, and reports per run: wall seconds of the whole command (start-up, data,
compilation, training, evals, checkpoints), final test accuracy, and training images/s.
A run is bit-deterministic on CPU for its seed, so the seeds are what vary the accuracy.
Target on the 2-core CPU machine: median test accuracy >= 92.0% within 300 s wall.

    python bench/fashion_cnn.py [--seeds=0,1,2] [extra --config.x=y overrides...]

Writes bench/results/fashion_cnn.md (the table) and fashion_cnn.json (raw numbers).
"""

import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import common  # noqa: E402

from jaxdl.train import read_metrics  # noqa: E402

TARGET_ACCURACY, TARGET_SECONDS = 0.92, 300.0


def run_once(workdir: Path, overrides: list[str]) -> dict:
    wall = common.train("experiments/fashion_cnn.py", workdir, overrides)
    rows = read_metrics(workdir)
    config = json.loads((workdir / "config.json").read_text())
    train_rows = [r for r in rows if "train/loss" in r]
    first, last = train_rows[0], train_rows[-1]
    images = (last["step"] - first["step"]) * config["data"]["batch_size"]
    return {
        "wall_s": wall,
        "accuracy": rows[-1]["eval/accuracy"],
        "steps": rows[-1]["step"],
        "train_images_per_s": images / (last["elapsed_s"] - first["elapsed_s"]),
        "curve": [(r["elapsed_s"], r["eval/accuracy"]) for r in rows if "eval/accuracy" in r],
    }


def report(results: list[dict], overrides: list[str]) -> str:
    """The Markdown table of `results` (one dict per seed, as run_once returns + seed)."""
    median = lambda key: statistics.median(r[key] for r in results)
    met = median("accuracy") >= TARGET_ACCURACY and median("wall_s") <= TARGET_SECONDS
    lines = [
        f"# Fashion-MNIST CNN: test accuracy vs wall time ({len(results)} runs, one per seed)",
        "",
        common.machine_line(),
        f"- command: `launch/train.py --config=experiments/fashion_cnn.py {' '.join(overrides)}`",
        "",
        "| seed | wall s (whole command) | steps | test accuracy | train images/s |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['seed']} | {r['wall_s']:.1f} | {r['steps']} | {r['accuracy']:.4f} "
            f"| {r['train_images_per_s']:.0f} |"
        )
    lines.append(
        f"| **median** | **{median('wall_s'):.1f}** | | **{median('accuracy'):.4f}** "
        f"| **{median('train_images_per_s'):.0f}** |"
    )
    lines += [
        "",
        f"Target: median accuracy >= {TARGET_ACCURACY:.1%} within "
        f"{TARGET_SECONDS:.0f} s wall: **{'met' if met else 'NOT met'}**.",
        "",
        f"Test accuracy at each eval (elapsed s: accuracy), seed {results[0]['seed']}: "
        + ", ".join(f"{t:.0f}: {a:.4f}" for t, a in results[0]["curve"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    seeds = [0, 1, 2]
    overrides = []
    for arg in sys.argv[1:]:
        if arg.startswith("--seeds="):
            seeds = [int(s) for s in arg.split("=", 1)[1].split(",")]
        else:
            overrides.append(arg)
    results = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            result = run_once(Path(tmp) / "run", [*overrides, f"--config.seed={seed}"])
        results.append({"seed": seed, **result})
        print(f"seed {seed}: {result['accuracy']:.4f} in {result['wall_s']:.0f} s", flush=True)
    table = report(results, overrides)
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fashion_cnn.md").write_text(table)
    (out / "fashion_cnn.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
