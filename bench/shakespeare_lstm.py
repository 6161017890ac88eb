"""Validation nats/char vs wall time of experiments/shakespeare_lstm.py, as a user runs it.

Each budget is a preset of the experiment (`--config=experiments/shakespeare_lstm.py:70s`,
`...:10min`): a model size and schedule planned to finish within it on this 2-core CPU.
Runs every (budget, seed) one after another and reports the whole command's wall time and
the final validation loss (nats/char over the last 10% of the text; bits/char beside).
Targets: median <= 1.75 nats/char within 70 s and <= 1.50 within 10 minutes.
Reference (the issue's machine): nanoGPT's CPU recipe (4-layer 128-wide GPT) reaches
1.886 at 70 s and 1.50-1.54 after 9 minutes.

    python bench/shakespeare_lstm.py [--budgets=70s,10min] [--seeds=0,1,2]

Writes bench/results/shakespeare_lstm.md, .json and .png (validation loss vs wall time).
"""

import json
import statistics
import sys
import tempfile
from pathlib import Path

import common

from jaxdl.train import read_metrics

TARGETS = {"70s": (70.0, 1.75), "10min": (600.0, 1.50)}


def run_once(budget: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "run"
        wall = common.train(
            f"experiments/shakespeare_lstm.py:{budget}", workdir, [f"--config.seed={seed}"]
        )
        rows = read_metrics(workdir)
        config = json.loads((workdir / "config.json").read_text())
    train = [r for r in rows if "train/loss" in r]
    tokens = (train[-1]["step"] - train[0]["step"]) * config["data"]["batch_size"]
    tokens *= config["data"]["window"]
    evals = [r for r in rows if "eval/loss" in r]
    return {
        "budget": budget,
        "seed": seed,
        "wall_s": wall,
        "steps": rows[-1]["step"],
        "loss": evals[-1]["eval/loss"],
        "bits_per_char": evals[-1]["eval/bits_per_char"],
        "tokens_per_s": tokens / (train[-1]["elapsed_s"] - train[0]["elapsed_s"]),
        "curve": [(r["elapsed_s"], r["eval/loss"]) for r in evals],
        "model": config["model"],
    }


def report(results: list[dict]) -> str:
    lines = [
        "# Tiny Shakespeare character LSTM: validation loss vs wall time",
        "",
        common.machine_line(),
        "- command: `launch/train.py --config=experiments/shakespeare_lstm.py:<budget> "
        "--config.seed=<seed>`; wall = the whole command",
        "",
        "| budget | seed | model | wall s | steps | val nats/char | val bits/char | train tok/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r["model"]
        lines.append(
            f"| {r['budget']} | {r['seed']} | {m['layers']}x{m['hidden']} {m['cell']} "
            f"| {r['wall_s']:.1f} | {r['steps']} | {r['loss']:.4f} | {r['bits_per_char']:.4f} "
            f"| {r['tokens_per_s']:.0f} |"
        )
    lines += ["", "| budget | median wall s | median val nats/char | target | met |"]
    lines += ["|---|---|---|---|---|"]
    for budget in dict.fromkeys(r["budget"] for r in results):
        runs = [r for r in results if r["budget"] == budget]
        wall = statistics.median(r["wall_s"] for r in runs)
        loss = statistics.median(r["loss"] for r in runs)
        seconds, target = TARGETS[budget]
        met = wall <= seconds and loss <= target
        lines.append(
            f"| {budget} | {wall:.1f} | {loss:.4f} | <= {target} in {seconds:.0f} s "
            f"| {'yes' if met else 'NO'} |"
        )
    lines += ["", "![validation loss vs elapsed seconds](shakespeare_lstm.png)", ""]
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for r in results:
        ax.plot(*zip(*r["curve"], strict=True), marker=".", label=f"{r['budget']} seed {r['seed']}")
    for seconds, target in TARGETS.values():
        ax.plot([seconds], [target], "k*", markersize=10)
    ax.set_xlabel("elapsed s (trainer clock)")
    ax.set_ylabel("validation nats/char")
    ax.set_ylim(top=2.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    budgets, seeds = list(TARGETS), [0, 1, 2]
    for arg in sys.argv[1:]:
        name, _, value = arg.partition("=")
        if name == "--budgets":
            budgets = value.split(",")
        elif name == "--seeds":
            seeds = [int(s) for s in value.split(",")]
        else:
            sys.exit(f"unknown argument {arg!r}; use --budgets=70s,10min --seeds=0,1,2")
    unknown = set(budgets) - set(TARGETS)
    if unknown:
        sys.exit(f"unknown budgets {sorted(unknown)}; known: {list(TARGETS)}")
    # Budgets not rerun keep their previous rows, so one budget can be rerun alone.
    saved = common.RESULTS / "shakespeare_lstm.json"
    previous = json.loads(saved.read_text()) if saved.exists() else []
    results = [r for r in previous if r["budget"] not in budgets]
    for budget in budgets:
        for seed in seeds:
            results.append(run_once(budget, seed))
            r = results[-1]
            print(f"{budget} seed {seed}: {r['loss']:.4f} in {r['wall_s']:.0f} s", flush=True)
    results.sort(key=lambda r: (list(TARGETS).index(r["budget"]), r["seed"]))
    table = report(results)
    print(table)
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    (common.RESULTS / "shakespeare_lstm.md").write_text(table)
    (common.RESULTS / "shakespeare_lstm.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, common.RESULTS / "shakespeare_lstm.png")


if __name__ == "__main__":
    main()
