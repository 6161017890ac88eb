"""Wall time of one sweep of K tiny-CNN trials: sequential vs local backend vs vmapped.

    python bench/sweep_vmap.py [--repeats 3] [--steps 200]

K = 8 trials of experiments/fashion_cnn_tiny.py on Fashion-MNIST (4 learning rates x
2 seeds), each `--steps` steps at batch 32 with a final eval on the 10,000 test images
(batches of 100) and a final checkpoint, as a sweep would run them.
Three ways, each a whole `launch/sweep.py` command (start-up, compilation, training,
evals, checkpoints, summary), in turn within each repeat so that load drifts hit all:
  sequential  --parallel=1 (one process per trial, one after another)
  local       --parallel=2 (two processes at a time, a core each)
  vmapped     --config.sweep.vmap=8 (one process, one compiled step for all 8; on CPU it
              vmaps one trial at a time under lax.map, sweep.vmap_chunk=0 -> 1)
  vmapped, all 8 at once   the same with --config.sweep.vmap_chunk=8 (plain jax.vmap)
Also checks that each vmapped trial ends at the eval loss of its own sequential run.
Writes bench/results/sweep_vmap.md.
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from common import RESULTS, ROOT, machine_line, timed_run

LEARNING_RATES = "[0.001,0.002,0.004,0.008]"
# The tiny config's 500 overflows this CPU's caches: 100 costs 2.3x less per image.
EVAL_BATCH = 100
WAYS = {
    "sequential": ["--parallel=1"],
    "local (2 processes)": ["--parallel=2"],
    "vmapped (K=8)": ["--config.sweep.vmap=8"],
    "vmapped (K=8), all 8 at once": ["--config.sweep.vmap=8", "--config.sweep.vmap_chunk=8"],
}


def sweep(sweep_dir: Path, steps: int, flags: list[str]) -> float:
    command = [
        sys.executable,
        str(ROOT / "launch/sweep.py"),
        f"--config={ROOT}/experiments/fashion_cnn_tiny.py",
        f"--sweep_dir={sweep_dir}",
        f"--sweep=config.optimizer.learning_rate={LEARNING_RATES}",
        "--sweep=config.seed=range(2)",
        f"--config.train.num_steps={steps}",
        "--config.train.eval_every=0",
        f"--config.train.log_every={steps}",
        "--config.train.plot=False",
        "--config.train.checkpoint_every=0",
        f"--config.data.eval_batch_size={EVAL_BATCH}",
        "--config.model.batch_norm=False",
        *flags,
    ]
    return timed_run(command)


def final_losses(sweep_dir: Path) -> list[float]:
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    losses = []
    for trial in manifest["trials"]:
        rows = (sweep_dir / trial["name"] / "metrics.jsonl").read_text().splitlines()
        losses.append(json.loads(rows[-1])["eval/loss"])
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    walls = {way: [] for way in WAYS}
    losses = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for index, (way, flags) in enumerate(WAYS.items()):
                sweep_dir = Path(tmp) / f"{repeat}_{index}"
                walls[way].append(sweep(sweep_dir, args.steps, flags))
                losses[way] = final_losses(sweep_dir)
                shutil.rmtree(sweep_dir)
                print(f"repeat {repeat}: {way}: {walls[way][-1]:.1f} s", flush=True)
    sequential = statistics.median(walls["sequential"])
    gap = max(
        abs(a - b) for a, b in zip(losses["sequential"], losses["vmapped (K=8)"], strict=True)
    )
    lines = [
        "# Sweep of K = 8 tiny-CNN trials: sequential vs local vs vmapped",
        "",
        machine_line(),
        f"- command: `python bench/sweep_vmap.py --repeats {args.repeats} --steps {args.steps}`",
        f"- trials: experiments/fashion_cnn_tiny.py (no batch norm), learning rate "
        f"{LEARNING_RATES} x seed 0-1, {args.steps} steps of 32 Fashion-MNIST images + "
        f"a final eval on 10,000 test images in batches of {EVAL_BATCH} + a final checkpoint; "
        "wall time of the whole launch/sweep.py command",
        f"- largest |final eval/loss, vmapped - sequential| over the 8 trials: {gap:.2e}",
        "",
        "| way | median wall s | runs | speed-up vs sequential |",
        "|---|---|---|---|",
    ]
    for way, values in walls.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:.1f}" for v in values)
        lines.append(f"| {way} | {median:.1f} | {runs} | {sequential / median:.2f}x |")
    table = "\n".join(lines) + "\n"
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sweep_vmap.md").write_text(table)


if __name__ == "__main__":
    main()
