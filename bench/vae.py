"""Test -ELBO and IWAE vs wall time: jaxdl's default VAE against the Flax example's.

Trains experiments/fashion_vae.py (ours) and experiments/fashion_vae_flax_example.py
(MLP 784-500-20, Adam 1e-3, batch 128) through launch/train.py with the same 5-minute
budget, one after the other, then evaluates each final checkpoint's IWAE bound with
k = 1000 samples on the first 1000 test images. Target: ours reaches the lower test
-ELBO at equal wall time.

    python bench/vae.py [--seed=0]

Runs go to runs/bench/<experiment> (reused by bench/interpolation.py). Writes
bench/results/vae.md and vae.png (test -ELBO against elapsed seconds).
"""

import shutil
import sys
from pathlib import Path

import common
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import data
from jaxdl.tasks.autoencode import iwae_bound, to_unit
from jaxdl.train import read_metrics
from jaxdl.train.run_info import load_run

EXPERIMENTS = {
    "jaxdl default": "fashion_vae",
    "Flax example architecture": "fashion_vae_flax_example",
}
IWAE_SAMPLES, IWAE_IMAGES = 1000, 1000


def iwae_nll(workdir: Path, images: np.ndarray) -> float:
    """-IWAE bound (k = 1000) averaged over `images`, 100 images at a time."""
    _, _, task, state = load_run(workdir)
    bound = jax.jit(
        lambda x, key: iwae_bound(task.iwae_log_weights(state.params, key, x, IWAE_SAMPLES))
    )
    key = jax.random.PRNGKey(0)
    values = [
        bound(to_unit(jnp.asarray(images[i : i + 100])), jax.random.fold_in(key, i))
        for i in range(0, len(images), 100)
    ]
    return -float(jnp.concatenate(values).mean())


def main() -> None:
    seed = 0
    for arg in sys.argv[1:]:
        name, _, value = arg.partition("=")
        if name != "--seed":
            sys.exit(f"unknown argument {arg!r}; use --seed=N")
        seed = int(value)
    test_images = data.load("fashion_mnist", "test").arrays["image"][:IWAE_IMAGES]
    results = {}
    for label, experiment in EXPERIMENTS.items():
        workdir = common.ROOT / "runs" / "bench" / experiment
        shutil.rmtree(workdir, ignore_errors=True)
        wall = common.train(f"experiments/{experiment}.py", workdir, [f"--config.seed={seed}"])
        rows = [r for r in read_metrics(workdir) if "eval/loss" in r]
        results[label] = {
            "wall_s": wall,
            "rows": rows,
            "iwae_1000": iwae_nll(workdir, test_images),
        }
        print(f"{label}: -ELBO {rows[-1]['eval/loss']:.2f} in {wall:.0f} s", flush=True)

    lines = [
        "# Fashion-MNIST VAE: test -ELBO and IWAE vs wall time (bench/vae.py)",
        "",
        common.machine_line(),
        f"- both runs: 300 s training budget (`train.max_seconds`), seed {seed}; Bernoulli "
        "likelihood on grey values; nats per image, lower is better",
        "",
        "| model | wall s (whole command) | steps | test -ELBO | test -IWAE k=16 "
        f"| -IWAE k={IWAE_SAMPLES} ({IWAE_IMAGES} test images) |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        last = r["rows"][-1]
        lines.append(
            f"| {label} | {r['wall_s']:.0f} | {last['step']} | {last['eval/loss']:.2f} "
            f"| {last['eval/iwae_nll']:.2f} | {r['iwae_1000']:.2f} |"
        )
    ours, base = (results[k]["rows"][-1]["eval/loss"] for k in EXPERIMENTS)
    lines += [
        "",
        f"Target (ours lower at equal wall time): **{'met' if ours < base else 'NOT met'}** "
        f"({ours:.2f} vs {base:.2f}).",
        "",
        "![test -ELBO vs elapsed seconds](vae.png)",
        "",
    ]
    table = "\n".join(lines)
    print(table)
    (common.RESULTS / "vae.md").write_text(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, r in results.items():
        ax.plot(
            [x["elapsed_s"] for x in r["rows"]],
            [x["eval/loss"] for x in r["rows"]],
            marker=".",
            label=label,
        )
    ax.set_xlabel("elapsed s (trainer clock)")
    ax.set_ylabel("test -ELBO (nats/image)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(common.RESULTS / "vae.png", dpi=110)


if __name__ == "__main__":
    main()
