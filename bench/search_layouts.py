"""How many trials in flight TPE can afford before it is no better than random search: a
simulation on a surrogate of the tiny-CNN landscape of bench/search.py, measured here.

    python bench/search_layouts.py [--landscape_trials=48] [--repeats=100]

1. Measures the landscape: a random search of --landscape_trials points of bench/search.py's
   space (vmapped, its flags), and the noise: its best point retrained with config.seed
   0..7. The surrogate is the final eval/loss against log learning rate (a running median
   of 3 neighbours, interpolated; weight decay is ignored, as it barely moves the loss in
   this range) plus Gaussian noise of the measured standard deviation.
2. Simulates searches of 24 trials on the surrogate, --repeats times each, every one paired
   with a random search of 24 on the same noise draws: Optuna TPE as jaxdl's search runs
   it (seeded, constant liar, 8 random start-up trials), asking `vmap` trials at a time on
   `slots` slots (each slot asks when its group finishes; one sampler for all, where
   jaxdl's search workers each seed their own), for several layouts; and an
   oracle that draws every trial from the best learning rates (0.01-0.04).
Prints and writes bench/results/search_layouts.md: median best loss and how often each
layout beats random search.
"""

import argparse
import json
import math
import statistics
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from common import RESULTS, ROOT, machine_line, timed_run
from search import EXPERIMENT, sweep_command

LAYOUTS = ((4, 2), (2, 2), (1, 2), (8, 1), (4, 1), (1, 1))  # (vmap, slots)
TRIALS = 24
STARTUP = 8
LR_RANGE = (1e-4, 0.3)
WD_RANGE = (1e-5, 0.3)


def finished(sweep_dir: Path) -> list[tuple[dict, float]]:
    """(optimizer config, final eval/loss) of each trial of a sweep directory."""
    found = []
    for metrics in sorted(sweep_dir.glob("*/metrics.jsonl")):
        rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
        losses = [r["eval/loss"] for r in rows if "eval/loss" in r]
        optimizer = json.loads((metrics.parent / "config.json").read_text())["optimizer"]
        found.append((optimizer, losses[-1]))
    return found


def measure(tmp: Path, trials: int, steps: int) -> tuple[np.ndarray, np.ndarray, list[float]]:
    experiment = tmp / "landscape.py"
    experiment.write_text(textwrap.dedent(EXPERIMENT.format(trials=trials, seed=100)))
    timed_run(sweep_command(experiment, tmp / "landscape", steps, f"--config.sweep.vmap={trials}"))
    points = sorted(
        (math.log10(o["learning_rate"]), loss, o) for o, loss in finished(tmp / "landscape")
    )
    best = min(points, key=lambda p: p[1])[2]
    seeds = [
        ROOT / "experiments/fashion_cnn_tiny.py",
        "--sweep=config.seed=range(8)",
        "--config.sweep.vmap=8",
        f"--config.optimizer.learning_rate={best['learning_rate']}",
        f"--config.optimizer.weight_decay={best['weight_decay']}",
    ]
    timed_run(sweep_command(seeds[0], tmp / "noise", steps, *seeds[1:]))
    log_lr = np.array([p[0] for p in points])
    losses = np.array([p[1] for p in points])
    smooth = np.array([np.median(losses[max(0, i - 1) : i + 2]) for i in range(len(losses))])
    return log_lr, smooth, [loss for _, loss in finished(tmp / "noise")]


class Surrogate:
    def __init__(self, log_lr, smooth, noise_sd, rng):
        self.log_lr, self.smooth, self.noise_sd, self.rng = log_lr, smooth, noise_sd, rng

    def __call__(self, learning_rate: float) -> float:
        mean = float(np.interp(math.log10(learning_rate), self.log_lr, self.smooth))
        return mean + self.rng.normal(0, self.noise_sd)

    def log_uniform(self, low, high) -> float:
        return 10 ** self.rng.uniform(math.log10(low), math.log10(high))


def random_search(f: Surrogate) -> float:
    return min(f(f.log_uniform(*LR_RANGE)) for _ in range(TRIALS))


def oracle(f: Surrogate) -> float:
    return min(f(f.log_uniform(0.01, 0.04)) for _ in range(TRIALS))


def tpe_search(f: Surrogate, seed: int, vmap: int, slots: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP, constant_liar=True)
    study = optuna.create_study(sampler=sampler)
    space = {
        "lr": optuna.distributions.FloatDistribution(*LR_RANGE, log=True),
        "wd": optuna.distributions.FloatDistribution(*WD_RANGE, log=True),
    }
    in_flight = [[study.ask(space) for _ in range(vmap)] for _ in range(slots)]
    best, told = math.inf, 0
    while told < TRIALS:
        group = in_flight.pop(0)  # slots finish their groups in the order they started
        for trial in group:
            loss = f(trial.params["lr"])
            study.tell(trial, loss)
            best = min(best, loss)
        told += len(group)
        in_flight.append([study.ask(space) for _ in range(vmap)])
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--landscape_trials", type=int, default=48)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log_lr, smooth, seed_losses = measure(Path(tmp), args.landscape_trials, args.steps)
    noise_sd = statistics.stdev(seed_losses)

    def simulate(search) -> list[float]:
        return [
            search(Surrogate(log_lr, smooth, noise_sd, np.random.default_rng(1000 + r)), r)
            for r in range(args.repeats)
        ]

    random = simulate(lambda f, r: random_search(f))
    arms = {"random search": random, "oracle (lr 0.01-0.04)": simulate(lambda f, r: oracle(f))}
    for vmap, slots in LAYOUTS:
        name = f"TPE, {vmap} vmapped x {slots} slots ({vmap * slots} in flight)"
        arms[name] = simulate(lambda f, r, v=vmap, s=slots: tpe_search(f, r, v, s))
    lines = [
        "# TPE against random search by trials in flight, on a measured surrogate",
        "",
        machine_line(),
        f"- `python bench/search_layouts.py --landscape_trials={args.landscape_trials} "
        f"--steps={args.steps} --repeats={args.repeats}`",
        f"- landscape: {args.landscape_trials} random points of bench/search.py's space, "
        f"{args.steps} steps; lowest smoothed loss {smooth.min():.4f}; noise: its best point "
        f"over config.seed 0..7, sd {noise_sd:.4f} ({min(seed_losses):.4f} to "
        f"{max(seed_losses):.4f})",
        f"- {TRIALS} trials a search, {STARTUP} of them random start-up for TPE; each row "
        f"{args.repeats} simulated searches, each paired with a random search on the same "
        "noise draws",
        "",
        "| search | median best eval/loss | beats random search |",
        "|---|---|---|",
    ]
    for name, found in arms.items():
        wins = sum(a < b for a, b in zip(found, random, strict=True))
        share = "-" if found is random else f"{wins} of {args.repeats}"
        lines.append(f"| {name} | {statistics.median(found):.4f} | {share} |")
    table = "\n".join(lines) + "\n"
    print(table)
    (RESULTS / "search_layouts.md").write_text(table)


if __name__ == "__main__":
    main()
