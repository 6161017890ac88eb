"""Quality vs wall time of the default experiment, as a user runs it.

Runs `launch/train.py --config=experiments/fashion_cnn.py` (as it stands) N times, one
after another, and reports per run: wall seconds of the whole command (start-up, data,
compilation, training, evals, checkpoints), final test accuracy, and training images/s.
Target on the 2-core CPU machine: median test accuracy >= 92.0% within 300 s wall.

    python bench/fashion_cnn.py [--runs=3] [extra --config.x=y overrides...]

Writes bench/results/fashion_cnn.md (the table) and fashion_cnn.json (raw numbers).
"""

import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from jaxdl.train import read_metrics  # noqa: E402

TARGET_ACCURACY, TARGET_SECONDS = 0.92, 300.0


def run_once(workdir: Path, overrides: list[str]) -> dict:
    command = [
        sys.executable,
        str(ROOT / "launch/train.py"),
        f"--config={ROOT / 'experiments/fashion_cnn.py'}",
        f"--workdir={workdir}",
        *overrides,
    ]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"run failed:\n{result.stderr[-3000:]}")
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


def main() -> None:
    runs = 3
    overrides = []
    for arg in sys.argv[1:]:
        if arg.startswith("--runs="):
            runs = int(arg.split("=", 1)[1])
        else:
            overrides.append(arg)
    results = []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(run_once(Path(tmp) / "run", overrides))
        r = results[-1]
        print(f"run {i + 1}/{runs}: {r['accuracy']:.4f} in {r['wall_s']:.0f} s", flush=True)

    median = lambda key: statistics.median(r[key] for r in results)
    met = median("accuracy") >= TARGET_ACCURACY and median("wall_s") <= TARGET_SECONDS
    lines = [
        f"# Fashion-MNIST CNN: test accuracy vs wall time ({runs} runs)",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: "
        f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores",
        f"- command: `launch/train.py --config=experiments/fashion_cnn.py {' '.join(overrides)}`",
        "",
        "| run | wall s (whole command) | steps | test accuracy | train images/s |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(results, 1):
        lines.append(
            f"| {i} | {r['wall_s']:.1f} | {r['steps']} | {r['accuracy']:.4f} "
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
        "Test accuracy at each eval (elapsed s: accuracy), run 1: "
        + ", ".join(f"{t:.0f}: {a:.4f}" for t, a in results[0]["curve"]),
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fashion_cnn.md").write_text(table)
    (out / "fashion_cnn.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
