"""What the trainer's loop costs: its steady-state steps/s against the bare jitted step.

For the default CNN (experiments/fashion_cnn.py) and the default LSTM
(experiments/shakespeare_lstm.py), alternately, `--repeats` times each:
  - bare: the same compiled step (shardings, donation) on the same batches, already on
    the device, in a plain Python loop;
  - trainer: train_and_evaluate (prefetch thread, hooks, one-step-late metrics, the
    non-finite check, log rows) with no eval or checkpoint until the end; its rate is
    read from the metrics rows' elapsed_s between the second and the last-but-one row.
Target: the trainer reaches >= 95% of the bare step. Run it on a quiet machine.

    python bench/trainer_overhead.py [--steps=600] [--repeats=3]

Writes bench/results/trainer_overhead.md.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import common  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from experiments import fashion_cnn, shakespeare_lstm  # noqa: E402
from jaxdl import configs, data, tasks  # noqa: E402
from jaxdl.train import compile_cache, read_metrics, train_and_evaluate  # noqa: E402
from jaxdl.train import mesh as mesh_lib  # noqa: E402

LOG_EVERY = 100


def experiment_config(name: str, steps: int):
    config = (fashion_cnn if name == "cnn" else shakespeare_lstm).get_config()
    config.train.update(
        num_epochs=0,
        num_steps=steps,
        max_seconds=0.0,
        log_every=LOG_EVERY,
        eval_every=10 * steps,
        checkpoint_every=0,
        plot=False,
    )
    return configs.resolve(config)


def bare_rate(config, steps: int) -> float:
    """Steps/s of the compiled step alone on `steps` batches prepared on the device."""
    mesh = mesh_lib.make_mesh()
    inputs = data.build_input(config.data, config.seed)
    task = tasks.build(config, inputs.info, steps)
    replicated, sharded = mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)
    batches = [mesh_lib.shard_batch(inputs.train.batch(k), mesh) for k in range(steps)]
    step = jax.jit(
        task.train_step,
        in_shardings=(replicated, sharded),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    state = jax.jit(task.init, out_shardings=replicated)(jax.random.PRNGKey(0), batches[0])
    warmup = 2 * LOG_EVERY  # as the trainer's first rows, left out of its rate
    for batch in batches[:warmup]:
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for batch in batches[warmup:]:
        state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
    return (steps - warmup) / (time.perf_counter() - start)


def trainer_rate(config) -> float:
    """Steps/s of train_and_evaluate between its second and its last-but-one row."""
    with tempfile.TemporaryDirectory() as workdir:
        train_and_evaluate(config, workdir)
        rows = [r for r in read_metrics(workdir) if "train/loss" in r]
    first, last = rows[1], rows[-2]
    return (last["step"] - first["step"]) / (last["elapsed_s"] - first["elapsed_s"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    compile_cache.enable()
    rows = []
    for name in ("cnn", "lstm"):
        config = experiment_config(name, args.steps)
        bare, trainer = [], []
        for _ in range(args.repeats):  # side by side, alternating
            bare.append(bare_rate(config, args.steps))
            trainer.append(trainer_rate(config))
            print(f"{name}: bare {bare[-1]:.1f}, trainer {trainer[-1]:.1f} steps/s", flush=True)
        ratios = [t / b for t, b in zip(trainer, bare, strict=True)]
        rows.append((name, statistics.median(bare), statistics.median(trainer), ratios))
    lines = [
        "# The trainer's loop against the bare jitted step (steady state)",
        "",
        common.machine_line(),
        f"- `python bench/trainer_overhead.py --steps={args.steps} --repeats={args.repeats}`; "
        f"rates between steps {2 * LOG_EVERY} and {args.steps - LOG_EVERY}, medians",
        "",
        "| model | bare step/s | trainer step/s | trainer / bare (each repeat) |",
        "|---|---|---|---|",
    ]
    for name, bare, trainer, ratios in rows:
        shown = ", ".join(f"{r:.3f}" for r in ratios)
        lines.append(
            f"| {name} | {bare:.1f} | {trainer:.1f} | **{statistics.median(ratios):.3f}** "
            f"({shown}) |"
        )
    met = all(statistics.median(r[3]) >= 0.95 for r in rows)
    lines += ["", f"Target: trainer >= 95% of the bare step: **{'met' if met else 'NOT met'}**."]
    table = "\n".join(lines) + "\n"
    print(table)
    (common.RESULTS / "trainer_overhead.md").write_text(table)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
