"""Random search vs Optuna (TPE + median pruning) vs population-based training, at equal
wall time, on the tiny-CNN sweep of bench/sweep_vmap.py (Fashion-MNIST, batch 32).

The space: learning rate log-uniform in [1e-4, 0.3] and weight decay log-uniform in
[1e-5, 0.3] (adamw, one-cycle schedule, as fashion_cnn_tiny), --steps steps a trial.
  random   --trials random points (jaxdl.sweeps.random_search), vmapped in one process;
  pbt      the same starting points, vmapped, exploit/explore every steps/8 steps with
           --pbt_factors;
  optuna   --optuna_parallel worker processes (one CPU core each), each training groups
           of --optuna_vmap trials asked at once as one vmapped run, one group after
           another in its own process; TPE after the first --optuna_startup random
           trials, a group pruned at an eval from --prune_after of its steps on when all
           its trials lag, stopped (SIGTERM) when the random search's wall time has
           passed: the trials finished by then count;
  control  optuna's runner and budget with every trial random (what its layout of
           groups and workers gives without TPE).
Each run's best final eval/loss (the test set), per search seed; medians over seeds.
Every trial of every arm trains with the same flags (4 evals of the test set). Then the
noise: the best config of the first seed's random search trained with config.seed 0..7.
A method beats random search when its median is lower and it wins on more than half of
the seeds that did not tie (paired by seed; the one-sided sign test's p is shown).

    python bench/search.py [--seeds=0,...,9] [--trials=24] [--steps=400] ... [--render]

Writes bench/results/search.{json,md} (with other options: search_<option><value>....);
--render writes the table again from the .json.
"""

import argparse
import json
import math
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
    return loss, f"lr {numbers['learning_rate']:.2g}, wd {numbers['weight_decay']:.2g}", numbers


def sweep_command(experiment: Path, sweep_dir: Path, steps: int, *flags: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "launch/sweep.py"),
        f"--config={experiment}",
        f"--sweep_dir={sweep_dir}",
        *flags,
        *common_flags(steps),
    ]


def run_vmapped(tmp: Path, seed: int, steps: int, trials: int, pbt_factors: str = "") -> tuple:
    """Random search, or with `pbt_factors` PBT from the same starting points."""
    experiment = tmp / f"search_{seed}.py"
    experiment.write_text(textwrap.dedent(EXPERIMENT.format(trials=trials, seed=seed)))
    sweep_dir = tmp / f"{'pbt' if pbt_factors else 'random'}_{seed}"
    pbt = [
        f"--config.sweep.pbt_every={max(1, steps // 8)}",
        f"--config.sweep.pbt_factors=({pbt_factors})",
    ]
    command = sweep_command(
        experiment, sweep_dir, steps, f"--config.sweep.vmap={trials}", *(pbt if pbt_factors else [])
    )
    wall = timed_run(command)
    return wall, best_run(sweep_dir)


def run_optuna(tmp: Path, seed: int, steps: int, wall: float, args, tpe: bool = True) -> tuple:
    """Optuna's search for `wall` seconds (`tpe` False: every trial drawn at random)."""
    sweep_dir = tmp / f"{'optuna' if tpe else 'control'}_{seed}"
    command = sweep_command(
        ROOT / "experiments/fashion_cnn_tiny.py",
        sweep_dir,
        steps,
        "--search=optuna",
        "--trials=1000",
        f"--search_seed={seed}",
        f"--prune_after={args.prune_after}",
        f"--parallel={args.optuna_parallel}",
        f"--config.sweep.vmap={args.optuna_vmap}",
        f"--startup_trials={args.optuna_startup if tpe else 10**9}",
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


def noise(tmp: Path, steps: int, numbers: dict) -> list[float]:
    """The final eval/loss of one config (`numbers`) trained with config.seed 0..7."""
    sweep_dir = tmp / "noise"
    command = sweep_command(
        ROOT / "experiments/fashion_cnn_tiny.py",
        sweep_dir,
        steps,
        "--sweep=config.seed=range(8)",
        "--config.sweep.vmap=8",
        f"--config.optimizer.learning_rate={numbers['learning_rate']}",
        f"--config.optimizer.weight_decay={numbers['weight_decay']}",
    )
    timed_run(command)
    finals = []
    for metrics in sorted(sweep_dir.glob("*/metrics.jsonl")):
        rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
        finals.append([r["eval/loss"] for r in rows if "eval/loss" in r][-1])
    return finals


def sign_test(wins: int, losses: int) -> float:
    """One-sided p of `wins` or more wins among the seeds that did not tie, were both
    methods as good."""
    n = wins + losses
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n if n else 1.0


OPTIONS = dict(
    trials=24,
    steps=400,
    prune_after=0.5,
    optuna_vmap=4,
    optuna_parallel=2,
    optuna_startup=8,
    pbt_factors="0.5,0.8,1.25,2",
)
SHORT = {"random": "random search", "pbt": "PBT", "optuna": "Optuna TPE", "control": "the control"}
COLUMNS = {
    "random": "random",
    "pbt": "PBT",
    "optuna": "Optuna TPE (done / pruned)",
    "control": "control: random in Optuna's runner (done)",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9")
    for name, default in OPTIONS.items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    parser.add_argument(
        "--render", action="store_true", help="only write the table again from its .json"
    )
    args = parser.parse_args()
    changed = [k for k, v in OPTIONS.items() if getattr(args, k) != v]
    name = "search" + "".join(f"_{k}{getattr(args, k)}" for k in changed)
    saved = RESULTS / f"{name}.json"
    if args.render:
        record = json.loads(saved.read_text())
    else:
        record = run(args)
        saved.write_text(json.dumps(record, indent=1) + "\n")
    table = render(record)
    print(table)
    (RESULTS / f"{name}.md").write_text(table)


def run(args) -> dict:
    """Every seed's searches and the noise floor, as JSON: what `render` reads."""
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for seed in seeds:
            wall, best = run_vmapped(tmp, seed, args.steps, args.trials)
            row = dict(seed=seed, random=(wall, best, None))
            row["pbt"] = (*run_vmapped(tmp, seed, args.steps, args.trials, args.pbt_factors), None)
            row["optuna"] = run_optuna(tmp, seed, args.steps, wall, args)
            row["control"] = run_optuna(tmp, seed, args.steps, wall, args, tpe=False)
            print(row, flush=True)
            rows.append(row)
        spread = noise(tmp, args.steps, rows[0]["random"][1][2])
    command = " ".join(f"--{k}={getattr(args, k)}" for k in ("seeds", *OPTIONS))
    return {"machine": machine_line(), "command": command, "rows": rows, "noise": spread}


def render(record: dict) -> str:
    rows, spread = record["rows"], record["noise"]
    loss = lambda row, key: row[key][1][0] if row[key][1] else None

    def median(key) -> str:
        found = [loss(r, key) for r in rows if loss(r, key) is not None]
        return f"{statistics.median(found):.4f}" if found else "none finished"

    def cell(row, key):
        wall, best, counts = row[key]
        found = f"{best[0]:.4f}: {best[1]}" if best else "none finished"
        more = ""
        if counts is not None:
            more = f"; {counts['done']}" + (f" / {counts['pruned']}" if key == "optuna" else "")
        return f"{found} ({wall:.0f} s{more})"

    lines = [
        "# Searches at equal wall time: random vs Optuna TPE + pruning vs PBT",
        "",
        record["machine"],
        f"- `python bench/search.py {record['command']}`; tiny CNN on Fashion-MNIST, lower "
        "eval/loss is better",
        "- each cell: the best finished trial's final eval/loss, the optimizer numbers it "
        "ended with, the search's wall time (and trials finished in it)",
        "",
        "| seed | " + " | ".join(COLUMNS.values()) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for r in rows:
        lines.append(f"| {r['seed']} | " + " | ".join(cell(r, key) for key in COLUMNS) + " |")
    lines.append("| **median** | " + " | ".join(f"**{median(key)}**" for key in COLUMNS) + " |")

    def verdict(key, other="random") -> str:
        pairs = [(loss(r, key), loss(r, other)) for r in rows]
        pairs = [(a if a is not None else math.inf, b) for a, b in pairs]
        won, lost = sum(a < b for a, b in pairs), sum(a > b for a, b in pairs)
        better = median(key) < median(other) and won > lost
        return (
            f"{SHORT[key]} against {SHORT[other]}: {won} seeds won, {lost} lost, "
            f"{len(rows) - won - lost} tied (sign test p = {sign_test(won, lost):.3f}), "
            f"median {median(key)} vs {median(other)}: {'met' if better else 'NOT met'}"
        )

    lines += [
        "",
        "Target (both adaptive methods beat random search at equal wall time: a lower "
        "median and more seeds won than lost; the sign test leaves ties out):",
        "",
        f"- {verdict('pbt')}",
        f"- {verdict('optuna')}",
        f"- {verdict('control')} (the control: random trials in Optuna's runner)",
        f"- {verdict('optuna', 'control')} (TPE's own share: the same runner and budget)",
        "",
        f"Noise: the first seed's random-search best ({rows[0]['random'][1][1]}) trained with "
        f"config.seed 0..7 ends at eval/loss {min(spread):.4f} to {max(spread):.4f} "
        f"(sd {statistics.stdev(spread):.4f}).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
