"""Scale-out on this machine: what processes, fsdp and micro-batches cost and save.

1. Steps/s of the default CNN (experiments/fashion_cnn.py, 600 steps) as 1 process x 4
   simulated devices vs 2 processes x 2 (launch/multiprocess.py: the cost of gloo
   collectives between processes), each the median of --repeats whole commands.
2. Bytes of parameters + optimizer state per device of a ~50M-parameter MLP classifier
   (model mlp, hidden 4096 x 4) on 4 simulated devices, replicated vs fsdp.
3. Micro-batches: XLA's temporary memory of the default CNN's compiled step against the
   batch size, with and without train.microbatches=8 (memory_analysis of the compiled
   program), and the largest batch of the powers of two whose temporaries fit a budget.

    python bench/scale.py [--repeats=3] [--budget_mib=256]

Writes bench/results/scale.md.
"""

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import common  # noqa: E402

TRAIN = [
    f"--config={ROOT}/experiments/fashion_cnn.py",
    "--config.train.num_steps=600",
    "--config.train.log_every=100",
    "--config.train.eval_every=100000",
    "--config.train.checkpoint_every=0",
    "--config.train.plot=False",
]

CHILD = """
import jax, numpy as np, sys
sys.path.insert(0, {root!r})
from jaxdl import configs, tasks
from jaxdl.train import mesh as mesh_lib
from experiments import fashion_cnn
part = {part!r}
if part == "bytes":
    config = configs.base_config(model="mlp")
    config.model.hidden = (4096, 4096, 4096, 4096)
    task = tasks.build(config, {{"class_names": list("0123456789")}}, 10)
    batch = {{"image": np.zeros((8, 28, 28, 1), np.uint8), "label": np.zeros(8, np.int32)}}
    abstract = jax.eval_shape(task.init, jax.random.PRNGKey(0), batch)
    mesh = mesh_lib.make_mesh()
    out = {{"params": sum(x.size for x in jax.tree.leaves(abstract.params))}}
    for mode in ("replicated", "fsdp"):
        sharding = mesh_lib.state_shardings(abstract, mesh, mode)
        state = jax.jit(task.init, out_shardings=sharding)(jax.random.PRNGKey(0), batch)
        arrays = jax.tree.leaves((state.params, state.opt_state))
        out[mode] = [sum(s.data.nbytes for x in arrays for s in x.addressable_shards
                         if s.device == d) for d in jax.devices()]
else:
    out = {{}}
    for micro in (1, 8):
        for batch_size in (128, 256, 512, 1024, 2048, 4096):
            config = fashion_cnn.get_config()
            config.data.batch_size = batch_size
            config.train.microbatches = micro
            task = tasks.build(config, {{"class_names": list("0123456789")}}, 10)
            batch = {{"image": np.zeros((batch_size, 28, 28, 1), np.uint8),
                      "label": np.zeros(batch_size, np.int32)}}
            state = jax.eval_shape(task.init, jax.random.PRNGKey(0), batch)
            compiled = jax.jit(task.train_step).lower(state, batch).compile()
            out[f"{{micro}}:{{batch_size}}"] = compiled.memory_analysis().temp_size_in_bytes
print(out)
"""


def child(part: str, devices: int) -> dict:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }
    code = CHILD.format(root=str(ROOT), part=part)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


def steps_per_s(workdir: Path) -> float:
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "train/loss" in r]
    first, last = rows[1], rows[-2]
    return (last["step"] - first["step"]) / (last["elapsed_s"] - first["elapsed_s"])


def processes_rates(repeats: int) -> dict:
    rates = {"1 x 4": [], "2 x 2": []}
    for _ in range(repeats):
        for layout in rates:
            with tempfile.TemporaryDirectory() as tmp:
                workdir = Path(tmp) / "run"
                if layout == "1 x 4":
                    env = {
                        **os.environ,
                        "JAX_PLATFORMS": "cpu",
                        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
                    }
                    command = [sys.executable, str(ROOT / "launch/train.py"), *TRAIN]
                else:
                    env = dict(os.environ)
                    command = [
                        sys.executable,
                        str(ROOT / "launch/multiprocess.py"),
                        "--num_processes=2",
                        "--devices_per_process=2",
                        "--",
                        str(ROOT / "launch/train.py"),
                        *TRAIN,
                    ]
                command.append(f"--workdir={workdir}")
                subprocess.run(command, capture_output=True, text=True, env=env, check=True)
                rates[layout].append(steps_per_s(workdir))
                print(layout, f"{rates[layout][-1]:.1f} steps/s", flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget_mib", type=int, default=256)
    args = parser.parse_args()
    rates = processes_rates(args.repeats)
    sizes = child("bytes", 4)
    memory = child("memory", 1)
    mib = lambda b: b / 2**20
    one, two = (statistics.median(rates[k]) for k in ("1 x 4", "2 x 2"))
    lines = [
        "# Scale-out: processes, fsdp, micro-batches",
        "",
        common.machine_line(),
        f"- `python bench/scale.py --repeats={args.repeats} --budget_mib={args.budget_mib}`",
        "",
        "## 1 process x 4 devices vs 2 processes x 2 (default CNN, 600 steps)",
        "",
        "| layout | steps/s (median) | each run |",
        "|---|---|---|",
        *(
            f"| {k} | {statistics.median(v):.1f} | {', '.join(f'{x:.1f}' for x in v)} |"
            for k, v in rates.items()
        ),
        "",
        f"2 x 2 runs at {two / one:.2f}x the speed of 1 x 4: the gradient all-reduce and the "
        "metrics go between processes over gloo (TCP on 127.0.0.1) instead of in memory.",
        "",
        f"## Bytes per device: MLP classifier of {sizes['params'] / 1e6:.1f}M parameters, "
        "parameters + Adam state, 4 devices",
        "",
        "| param_sharding | MiB on each device | total MiB |",
        "|---|---|---|",
        *(
            f"| {mode} | {', '.join(f'{mib(b):.0f}' for b in sizes[mode])} | "
            f"{mib(sum(sizes[mode])):.0f} |"
            for mode in ("replicated", "fsdp")
        ),
        "",
        "## Micro-batches: XLA temporaries of the default CNN's step (MiB)",
        "",
        "| batch | microbatches=1 | microbatches=8 |",
        "|---|---|---|",
    ]
    batches = sorted({int(k.split(":")[1]) for k in memory})
    for b in batches:
        lines.append(f"| {b} | {mib(memory[f'1:{b}']):.0f} | {mib(memory[f'8:{b}']):.0f} |")
    budget = args.budget_mib * 2**20
    largest = {
        m: max((b for b in batches if memory[f"{m}:{b}"] <= budget), default=None) for m in (1, 8)
    }
    lines += [
        "",
        f"Largest batch (of those) whose temporaries fit {args.budget_mib} MiB: "
        f"{largest[1]} without micro-batches, {largest[8]} with 8.",
        "",
        "Not measured here: a GPU or TPU would run the collectives over NVLink/ICI instead of "
        "TCP, so the process cost shrinks to the interconnect's; fsdp's gathers then overlap "
        "compute; and bfloat16 doubles matmul throughput there while this CPU emulates it.",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    (common.RESULTS / "scale.md").write_text(table)


if __name__ == "__main__":
    main()
