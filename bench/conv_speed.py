"""Training-step throughput of CNN variants: XLA's convolution vs conv_as_matmul.

    python bench/conv_speed.py

Times the jitted ClassifyTask.train_step (batch 128, Adam, batch norm) on synthetic
28x28 images; median of 5 repeats of 10 steps. Writes bench/results/conv_speed.md.
"""

import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from experiments import fashion_cnn  # noqa: E402
from jaxdl import data, tasks  # noqa: E402

VARIANTS = [  # (label, model overrides)
    ("default (fashion_cnn)", {}),
    ("28x28 input, stages (32,32),(64,64)", dict(stem_block=1, stages=((32, 32), (64, 64)))),
    ("28x28 input, stages (32,),(64,)", dict(stem_block=1, stages=((32,), (64,)))),
    ("space-to-depth 2, stages (32,32),(64,64)", dict(stem_block=2, stages=((32, 32), (64, 64)))),
]


def images_per_second(model_overrides: dict, conv_impl: str, batch_size=128) -> float:
    config = fashion_cnn.get_config()
    config.model.update(model_overrides)
    config.model.conv_impl = conv_impl
    dataset = data.Dataset(
        arrays={
            "image": np.zeros((batch_size, 28, 28, 1), np.uint8),
            "label": np.zeros(batch_size, np.int32),
        },
        class_names=tuple("0123456789"),
        origin="synthetic",
    )
    task = tasks.build(config, {"class_names": dataset.class_names}, total_steps=1000)
    batch = {k: jnp.asarray(v) for k, v in dataset.arrays.items()}
    state = jax.jit(task.init)(jax.random.PRNGKey(0), batch)
    step = jax.jit(task.train_step, donate_argnums=0)
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10):
            state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return 10 * batch_size / statistics.median(times)


def main() -> None:
    lines = [
        "# Conv implementation: training images/s (batch 128, median of 5)",
        "",
        f"jax {jax.__version__}, {jax.devices()[0].platform}",
        "",
        "| model | xla conv | conv_as_matmul | matmul / xla |",
        "|---|---|---|---|",
    ]
    for label, overrides in VARIANTS:
        xla, matmul = (images_per_second(overrides, impl) for impl in ("xla", "matmul"))
        lines.append(f"| {label} | {xla:.0f} | {matmul:.0f} | {matmul / xla:.2f} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    print(table)
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "conv_speed.md").write_text(table)


if __name__ == "__main__":
    main()
