"""Random search vs Optuna (TPE + median pruning) vs population-based training, at equal
wall time, on the tiny-CNN sweep of bench/sweep_vmap.py (Fashion-MNIST, batch 32).

The space: learning rate log-uniform in [1e-4, 0.3] and weight decay log-uniform in
[1e-5, 0.3] (adamw, one-cycle schedule, as fashion_cnn_tiny), --steps steps a trial.
  random   K random points (jaxdl.sweeps.random_search), vmapped in one process;
  pbt      the same K starting points, vmapped, exploit/explore every steps/8 steps;
  optuna   trials asked one after another (2 local slots), pruned at each of its evals
           (from --prune_after of a trial's steps on),
           stopped (SIGTERM) when the random search's wall time has passed.
Each run's best final eval/loss (the test set), per search seed; medians over seeds.

    python bench/search.py [--seeds=0,1] [--steps=400] [--trials=8] [--prune_after=0]

Writes bench/results/search.md (other --trials/--steps/--prune_after:
search_<T>trials_<N>steps[_prune<F>].md).
"""

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from common import RESULTS, ROOT, machine_line, timed_run

EXPERIMENT = """
from experiments import fashion_cnn_tiny
from jaxdl import sweeps


def get_config():
    return fashion_cnn_tiny.get_config()


def sweep():
    return sweeps.random_search(
        {trials},
        seed={seed},
        **{{
            "optimizer.learning_rate": sweeps.loguniform(1e-4, 0.3),
            "optimizer.weight_decay": sweeps.loguniform(1e-5, 0.3),
        }},
    )
"""
SPACE = [
    "--space=config.optimizer.learning_rate=loguniform(1e-4,0.3)",
    "--space=config.optimizer.weight_decay=loguniform(1e-5,0.3)",
]


def common_flags(steps: int) -> list[str]:
    return [
        f"--config.train.num_steps={steps}",
        f"--config.train.eval_every={steps // 4}",
        f"--config.train.log_every={steps // 4}",
        "--config.train.checkpoint_every=0",
        "--config.train.plot=False",
        "--config.data.eval_batch_size=100",
    ]


def best_run(sweep_dir: Path) -> tuple[float, str] | None:
    """The lowest final eval/loss of the trials that finished, and the optimizer numbers
    that trial ended with (PBT: its lineage's last row; else its config)."""
    best = None
    for metrics in sweep_dir.glob("*/metrics.jsonl"):
        rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
        losses = [r["eval/loss"] for r in rows if isinstance(r.get("eval/loss"), float)]
        if not (losses and rows and "stop" not in rows[-1]):
            continue
        if best is None or losses[-1] < best[0]:
            best = (losses[-1], metrics.parent)
    if best is None:
        return None
    loss, trial = best
    lineage = trial / "lineage.jsonl"
    if lineage.exists():
        numbers = json.loads(lineage.read_text().splitlines()[-1])
    else:
        numbers = json.loads((trial / "config.json").read_text())["optimizer"]
    return loss, f"lr {numbers['learning_rate']:.2g}, wd {numbers['weight_decay']:.2g}"


def sweep_command(experiment: Path, sweep_dir: Path, steps: int, *flags: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "launch/sweep.py"),
        f"--config={experiment}",
        f"--sweep_dir={sweep_dir}",
        *flags,
        *common_flags(steps),
    ]


def run_vmapped(tmp: Path, seed: int, steps: int, trials: int, pbt: bool) -> tuple:
    experiment = tmp / f"search_{seed}.py"
    experiment.write_text(textwrap.dedent(EXPERIMENT.format(trials=trials, seed=seed)))
    sweep_dir = tmp / f"{'pbt' if pbt else 'random'}_{seed}"
    command = sweep_command(
        experiment,
        sweep_dir,
        steps,
        f"--config.sweep.vmap={trials}",
        *([f"--config.sweep.pbt_every={max(1, steps // 8)}"] if pbt else []),
    )
    wall = timed_run(command)
    return wall, best_run(sweep_dir)


def run_optuna(tmp: Path, seed: int, steps: int, wall: float, prune_after: float) -> tuple:
    sweep_dir = tmp / f"optuna_{seed}"
    command = sweep_command(
        ROOT / "experiments/fashion_cnn_tiny.py",
        sweep_dir,
        steps,
        "--search=optuna",
        "--trials=1000",
        f"--search_seed={seed}",
        f"--prune_after={prune_after}",
        "--parallel=2",
        *SPACE,
    )
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        process.wait(timeout=wall)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # running trials stop; finished ones count
        process.wait()
    used = time.perf_counter() - start
    summary = (sweep_dir / "summary.md").read_text() if (sweep_dir / "summary.md").exists() else ""
    counts = {s: summary.count(f"| {s} |") for s in ("done", "pruned", "interrupted", "running")}
    return used, best_run(sweep_dir), counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--prune_after", type=float, default=0.0)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for seed in seeds:
            random_wall, random_best = run_vmapped(tmp, seed, args.steps, args.trials, pbt=False)
            pbt_wall, pbt_best = run_vmapped(tmp, seed, args.steps, args.trials, pbt=True)
            optuna_wall, optuna_best, counts = run_optuna(
                tmp, seed, args.steps, random_wall, args.prune_after
            )
            row = dict(
                seed=seed,
                random=(random_wall, random_best),
                pbt=(pbt_wall, pbt_best),
                optuna=(optuna_wall, optuna_best),
                counts=counts,
            )
            print(row, flush=True)
            rows.append(row)
    loss = lambda row, key: row[key][1][0] if row[key][1] else None
    median = lambda key: statistics.median(loss(r, key) for r in rows if loss(r, key) is not None)

    def cell(row, key, more=""):
        wall, best = row[key]
        found = f"{best[0]:.4f}: {best[1]}" if best else "none finished"
        return f"{found} ({wall:.0f} s{more})"

    lines = [
        "# Searches at equal wall time: random vs Optuna TPE + pruning vs PBT",
        "",
        machine_line(),
        f"- `python bench/search.py --seeds={args.seeds} --steps={args.steps} "
        f"--trials={args.trials} --prune_after={args.prune_after}`; tiny CNN on "
        "Fashion-MNIST, lower eval/loss is better",
        "- each cell: the best finished trial's final eval/loss, the optimizer numbers it "
        "ended with, the search's wall time",
        "",
        "| seed | random | PBT | Optuna (trials done / pruned) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        counts = f"; {r['counts']['done']} / {r['counts']['pruned']}"
        lines.append(
            f"| {r['seed']} | {cell(r, 'random')} | {cell(r, 'pbt')} | "
            f"{cell(r, 'optuna', counts)} |"
        )
    lines.append(
        f"| **median** | **{median('random'):.4f}** | **{median('pbt'):.4f}** | "
        f"**{median('optuna'):.4f}** |"
    )
    beats = lambda key: all(
        loss(r, key) is not None and loss(r, key) < loss(r, "random") for r in rows
    )
    lines += [
        "",
        "Target (both adaptive methods beat random search at equal wall time, every seed): "
        f"PBT {'met' if beats('pbt') else 'NOT met'}, "
        f"Optuna {'met' if beats('optuna') else 'NOT met'}.",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    defaults = all(getattr(args, k) == parser.get_default(k) for k in ("trials", "steps"))
    name = "search" if defaults else f"search_{args.trials}trials_{args.steps}steps"
    if args.prune_after != parser.get_default("prune_after"):
        name += f"_prune{args.prune_after:g}"
    name += ".md"
    (RESULTS / name).write_text(table)


if __name__ == "__main__":
    main()
