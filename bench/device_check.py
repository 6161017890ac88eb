"""One device check: what jaxdl does on a GPU, in one command of at most 8 minutes.

Prepared here, run once where the `device` tool lends a GPU, from a clean checkout:

    make device-bundle      # here, with a network: .device/ (git-ignored, ~31 MiB)
    # the device tool, one call (a start of 1-2 minutes + at most 8 of the 15 lent):
    run(command="python3 bench/device_check.py --out=$OUT", carry=[".device"], timeout_s=600)
    # its reply: the table in output_tail, device_check.md/.json under files_at; here:
    cp <files_at>/device_check.* bench/results/    # and commit them
    # a CPU smoke run of every part at toy sizes (prints the table, writes no results):
    .venv/bin/python bench/device_check.py --quick

The device machine has Python 3.12, jax 0.11 with its CUDA plugin, flax, optax,
orbax-checkpoint, chex, absl-py, numpy, pytest and pytest-xdist, and no network. jaxdl is
not installed there (pyproject.toml says Python 3.11): the checkout goes on PYTHONPATH.
What jaxdl imports at run time and the machine lacks (`DEVICE_WHEELS`) travels as wheels
in .device/wheels, installed with `pip install --no-index --no-deps --target` into a
temporary folder before the first part; Fashion-MNIST and Tiny Shakespeare travel in
.device/data (used when ../shared/data is not there, as on that machine).

Each part runs in a child process under its own time limit (a hang or a crash costs that
part, not the check), all of them under one deadline of 445 s; the table shows them in
this order (they run with the tests last):
  versions    python, jax, jaxlib, CUDA plugin, flax, optax, orbax, chex, numpy; the
              device; what "auto" becomes there (jaxdl/backends.py); whether float32
              matmuls at XLA's default precision run as TF32
  tests       the test suite's device-relevant subset (`TESTS`), not `slow`-filtered, on
              the GPU: what fails there that passes on CPU
  accuracy    the default experiment (experiments/fashion_cnn.py) with an eval every
              epoch: trainer seconds to 92% test accuracy, final accuracy, whole command
  throughput  train steps/s of the default CNN and the default LSTM
              (experiments/shakespeare_lstm.py) in float32 and bfloat16, the bare compiled
              step on batches already on the device; a 53.6M-parameter MLP (bench/scale.py's,
              hidden 4096 x 4): model FLOPs/s (6 x weights x batch) over the chip's peak
  sweep       K = 1, 8, 32, 128 tiny-CNN trials (experiments/fashion_cnn_tiny.py, no batch
              norm, as bench/sweep_vmap.py; 4 learning rates x seeds) as one vmapped
              program (train/trials.VmappedTask, all K at once: the GPU's
              sweep.vmap_chunk) against K one after another (the K=1 program, compiled
              once, run for each trial: the best case for sequential), trials/s each way
  cache       a 2-step launch of the default experiment with an empty compile cache and
              again with the cache it filled (bench/launch_time.py's measure)
  restore     a tiny-CNN run trained here on CPU ("auto": matmul; made by make
              device-bundle, .device/cpu_run) read there with train/run_info.load_run
              ("auto": XLA's convolution): its logits on 256 test images against the ones
              recorded here (another backend, kernel, jax and orbax version)
Writes bench/results/device_check.md (and .json) and copies both to --out.
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / ".device"  # git-ignored; the device tool's `carry`
WHEELS = BUNDLE / "wheels"
DATA = BUNDLE / "data"
RESULTS = ROOT / "bench" / "results"
# What jaxdl imports at run time that the device machine's image lacks (KINDS.md's list),
# pinned as in pyproject.toml; pure Python. The `versions` part names any other missing
# module: add its wheel here.
DEVICE_WHEELS = ("ml-collections==1.1.0", "tensorboardX==2.6.5")
DATA_SETS = ("fashion-mnist", "tinyshakespeare")
CPU_RUN = BUNDLE / "cpu_run"  # a tiny run trained here, read on the device
CPU_LOGITS = BUNDLE / "cpu_run_logits.npy"  # its logits here, on the first RESTORE_IMAGES
RESTORE_IMAGES = 256
NEEDED = ("jax", "flax", "optax", "orbax.checkpoint", "chex", "absl", "numpy", "ml_collections")
NEEDED += ("tensorboardX", "PIL", "matplotlib", "pytest")
# The device-relevant tests: models, tasks, steps, vmapped trials, PBT, the trainer's
# resume, compile cache and backend choice. Left out: tests of 1 vs 4 simulated CPU
# devices (a GPU machine has one device) and of processes, data, serving and sweeps.
TESTS = (
    "tests/test_backends.py",
    "tests/test_losses.py",
    "tests/test_optim.py",
    "tests/models",
    "tests/tasks",
    "tests/train/test_trials.py",
    "tests/train/test_pbt.py",
    "tests/train/test_loop.py",
    "tests/train/test_train_e2e.py",
    "tests/train/test_compile_cache.py",
)
DESELECT = "not four_devices"
DEADLINE_S = 445  # + up to ~25 s for a part stopped at its limit: under 8 minutes
# In this order; the tests last: they take what is left (up to their limit) and report
# the tests they finished when stopped, where another part cut short loses its rows.
LIMITS = {"versions": 45, "restore": 40, "sweep": 100, "throughput": 100, "accuracy": 90}
LIMITS["cache"] = 60
LIMITS["tests"] = 110
QUICK_LIMITS = dict.fromkeys(LIMITS, 400)
# Dense tensor-core peaks (FLOP/s) by device kind: bfloat16, and TF32 for float32.
PEAKS = (
    ("H100 PCIe", {"bfloat16": 756e12, "float32": 378e12}),
    ("H100", {"bfloat16": 989e12, "float32": 494.7e12}),
    ("H200", {"bfloat16": 989e12, "float32": 494.7e12}),
    ("A100", {"bfloat16": 312e12, "float32": 156e12}),
)
TARGET_ACCURACY = 0.92
SWEEP_KS = (1, 8, 32, 128)
LEARNING_RATES = (0.001, 0.002, 0.004, 0.008)


# ---- Here: the bundle that travels ---------------------------------------------------------
def bundle() -> None:
    """Downloads DEVICE_WHEELS for Python 3.12 into .device/wheels and copies the data
    sets into .device/data (run here, with a network; `make device-bundle`)."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    for old in WHEELS.glob("*.whl"):
        old.unlink()
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
    command += [arg for p in platforms for arg in ("--platform", p)]
    subprocess.run([*command, "-d", str(WHEELS), *DEVICE_WHEELS], check=True)
    shared = Path(os.environ.get("JAXDL_DATA_DIR") or ROOT.parent / "shared" / "data")
    for name in DATA_SETS:
        shutil.copytree(shared / name, DATA / name, dirs_exist_ok=True)
    shutil.rmtree(CPU_RUN, ignore_errors=True)
    train = [sys.executable, str(ROOT / "launch/train.py"), f"--workdir={CPU_RUN}"]
    train += [f"--config={ROOT}/experiments/fashion_cnn_tiny.py", "--config.train.plot=False"]
    subprocess.run(train, check=True, env=dict(os.environ, JAXDL_DATA_DIR=str(DATA)))
    import numpy as np

    np.save(CPU_LOGITS, _restored_logits(CPU_RUN))
    for path in sorted(BUNDLE.glob("*/*")):
        size = sum(f.stat().st_size for f in [path, *path.rglob("*")] if f.is_file())
        print(f"{path.relative_to(ROOT)}: {size / 2**20:.1f} MiB")


# ---- The orchestrator: an environment, each part in a child, the table ---------------------
def child_env() -> tuple[dict, list[str]]:
    """The parts' environment: the checkout (and the carried wheels, installed once) on
    PYTHONPATH, the carried data where ../shared/data is missing, no GPU preallocation
    (parts and the tests' processes share the GPU). Also the modules still missing."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", XLA_PYTHON_CLIENT_PREALLOCATE="false")
    paths = [str(ROOT)]
    wheels = sorted(WHEELS.glob("*.whl"))
    missing = [m for m in NEEDED if importlib.util.find_spec(m.split(".")[0]) is None]
    if missing and wheels:
        site = Path(tempfile.gettempdir()) / "jaxdl-device-site"
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
        pip += ["--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site)]
        subprocess.run([*pip, *map(str, wheels)], check=True)
        paths.append(str(site))
        sys.path.append(str(site))
        importlib.invalidate_caches()
        missing = [m for m in NEEDED if importlib.util.find_spec(m.split(".")[0]) is None]
    env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    shared = ROOT.parent / "shared" / "data" / "fashion-mnist"
    if "JAXDL_DATA_DIR" not in env and not shared.is_dir() and (DATA / "fashion-mnist").is_dir():
        env["JAXDL_DATA_DIR"] = str(DATA)
    return env, missing


def run_part(name: str, limit: float, env: dict, quick: bool, scratch: Path) -> dict:
    """Runs part `name` in a child process; its result (what it saved before a timeout
    too), with `seconds`, and `error` if it failed or ran out of time."""
    out = scratch / f"{name}.json"
    command = [sys.executable, __file__, f"--part={name}", f"--result={out}"]
    command += ["--quick"] * quick
    start = time.perf_counter()
    child = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        log, _ = child.communicate(timeout=limit)
        error = f"exit {child.returncode}" if child.returncode else None
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGINT)  # pytest prints what failed so far
        try:
            log, _ = child.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            log, _ = child.communicate()
        error = f"stopped at its limit of {limit:.0f} s"
    result = json.loads(out.read_text()) if out.exists() else {}
    result["seconds"] = round(time.perf_counter() - start, 1)
    if error:
        result["error"] = error
        result["log_tail"] = log[-2500:]
    print(f"[{name}] {result['seconds']:.0f} s{': ' + error if error else ''}", flush=True)
    if error:
        print(log[-2500:], flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes: a CPU smoke run")
    parser.add_argument("--bundle", action="store_true", help="make .device/ (here)")
    parser.add_argument("--out", default="", help="also copy the results here ($OUT)")
    parser.add_argument("--only", default="", help="comma-separated parts (default: all)")
    parser.add_argument("--part", default="", help=argparse.SUPPRESS)
    parser.add_argument("--result", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bundle:
        return bundle()
    if args.part:
        return PARTS[args.part](Saver(Path(args.result)), args.quick)
    started = time.perf_counter()
    env, missing = child_env()
    if missing:
        print(f"missing modules (add their wheels to DEVICE_WHEELS): {missing}", flush=True)
    limits = QUICK_LIMITS if args.quick else LIMITS
    names = args.only.split(",") if args.only else list(PARTS)
    results = {"missing_modules": missing, "quick": args.quick}
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            left = DEADLINE_S - (time.perf_counter() - started)
            if left < 10 and not args.quick:
                results[name] = {"error": "not run: the check's deadline was reached"}
                continue
            limit = limits[name] if args.quick else min(limits[name], left)
            results[name] = run_part(name, limit, env, args.quick, Path(scratch))
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    table = render(results, args)
    print(table, flush=True)
    written = []
    if not args.quick:  # a CPU smoke run leaves bench/results alone
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "device_check.md").write_text(table)
        (RESULTS / "device_check.json").write_text(json.dumps(results, indent=1) + "\n")
        written = [RESULTS / "device_check.md", RESULTS / "device_check.json"]
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "device_check.md").write_text(table)
        (out / "device_check.json").write_text(json.dumps(results, indent=1) + "\n")
        written += [out / "device_check.md", out / "device_check.json"]
    for path in written:
        print(f"wrote {path}")


# ---- The parts (each in its own child process) ---------------------------------------------
class Saver:
    """A part's result, written after every measurement, so that a part stopped at its
    limit still reports what it measured."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict = {}

    def __setitem__(self, key, value) -> None:
        self.data[key] = value
        self.path.write_text(json.dumps(self.data, indent=1, default=str))

    def __getitem__(self, key):
        return self.data[key]


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def part_versions(save: Saver, quick: bool) -> None:
    import jax
    import jax.numpy as jnp

    from jaxdl import backends, configs

    distributions = ["jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "numpy"]
    distributions += ["ml-collections", "tensorboardX", "ml-dtypes"]
    plugins = sorted(
        d.metadata["Name"]
        for d in importlib.metadata.distributions()
        if (d.metadata["Name"] or "").startswith(("jax-cuda", "jax_cuda", "jax-rocm"))
    )
    save["python"] = platform.python_version()
    save["packages"] = {d: _version(d) for d in [*distributions, *plugins]}
    backend = jax.default_backend()
    device = jax.devices()[0]
    save["backend"] = backend
    save["devices"] = f"{jax.device_count()} x {device.device_kind}"
    stats = device.memory_stats() or {}
    save["memory_gib"] = round(stats.get("bytes_limit", 0) / 2**30, 1)
    config = configs.resolve(configs.base_config())
    save["auto"] = {
        **backends.picked(config, backend),
        "sweep.vmap_chunk (0, 8 trials)": backends.vmap_chunk(0, backend, 8),
        "train.compute_dtype": config.train.compute_dtype,
    }
    x = jax.random.normal(jax.random.PRNGKey(0), (1024, 1024), jnp.float32)
    y = jax.random.normal(jax.random.PRNGKey(1), (1024, 1024), jnp.float32)
    default = jnp.matmul(x, y)
    highest = jnp.matmul(x, y, precision=jax.lax.Precision.HIGHEST)
    save["float32_matmul_rel_error"] = float(
        jnp.linalg.norm(default - highest) / jnp.linalg.norm(highest)
    )  # ~1e-7: full float32; ~1e-4-1e-3: TF32


def part_tests(save: Saver, quick: bool) -> None:
    paths = ["tests/test_backends.py"] if quick else list(TESTS)
    # -v: a line per test as it ends, so a run stopped at its limit still says what failed
    command = [sys.executable, "-m", "pytest", *paths, "-v", "-rfE", "--tb=line"]
    command += ["-p", "no:cacheprovider", "-k", DESELECT]
    if importlib.util.find_spec("xdist") and not quick:
        command += ["-n", "8", "--dist", "worksteal"]
    if importlib.util.find_spec("pytest_timeout"):
        command += ["--timeout=90"]
    save["command"] = " ".join(command[1:])
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    lines = []
    stopped = False
    try:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
    except KeyboardInterrupt:  # the orchestrator's limit: pytest prints what failed so far
        stopped = True
        process.send_signal(signal.SIGINT)
        try:
            lines += process.communicate(timeout=5)[0].splitlines()
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()
    outcomes = {}  # test id -> its last outcome seen
    for line in lines:
        words = line.replace("[", " ").replace("]", " ").split()
        for outcome in ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL"):
            if outcome in words:
                i = words.index(outcome)
                test = next((w for w in words[i - 1 : i + 2] if "::" in w), None)
                if test:
                    outcomes[test] = outcome
    counts = {o: list(outcomes.values()).count(o) for o in sorted(set(outcomes.values()))}
    summary = [x for x in lines if " in " in x and ("passed" in x or "failed" in x)]
    save["failed"] = sorted(f"{o} {t}" for t, o in outcomes.items() if o in ("FAILED", "ERROR"))
    save["counts"] = counts
    save["summary"] = summary[-1].strip("= ") if summary else f"stopped: {counts} so far"
    save["exit"] = process.returncode
    save["stopped"] = stopped


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def part_accuracy(save: Saver, quick: bool) -> None:
    config = "fashion_cnn_tiny" if quick else "fashion_cnn"
    max_seconds = 20 if quick else 70
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "run"
        command = [sys.executable, str(ROOT / "launch/train.py")]
        command += [f"--config={ROOT}/experiments/{config}.py", f"--workdir={workdir}"]
        command += ["--config.train.eval_every=0", "--config.train.checkpoint_every=0"]
        command += ["--config.train.plot=False", f"--config.train.max_seconds={max_seconds}"]
        command += [f"--compile_cache={Path(tmp) / 'cache'}"]  # cold: compiles included
        save["command"] = " ".join(command[1:]).replace(str(ROOT) + "/", "")
        start = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        save["wall_s"] = round(time.perf_counter() - start, 1)
        save["exit"] = result.returncode
        backend = [x for x in result.stderr.splitlines() if x.startswith("backend ")]
        save["backend_line"] = backend[0] if backend else "-"
        if result.returncode:
            save["stderr_tail"] = result.stderr[-2000:]
        rows = _read_rows(workdir / "metrics.jsonl")
        evals = [r for r in rows if "eval/accuracy" in r]
        reached = [r for r in evals if r["eval/accuracy"] >= TARGET_ACCURACY]
        save["curve"] = [(r["step"], round(r["elapsed_s"], 1), r["eval/accuracy"]) for r in evals]
        save["reached"] = (
            (reached[0]["step"], round(reached[0]["elapsed_s"], 1)) if reached else None
        )
        save["final"] = evals[-1]["eval/accuracy"] if evals else None
        if (workdir / "run.json").exists():
            save["run_json_backend"] = json.loads((workdir / "run.json").read_text())["backend"]


def _step_rate(task, batches: list, steps: int, warmup: int) -> tuple[float, float]:
    """(steps/s of the compiled step on batches already on the device, compile s)."""
    import jax

    from jaxdl.train.mesh import jit_unoptimised

    start = time.perf_counter()
    step = jax.jit(task.train_step, donate_argnums=0)
    state = jit_unoptimised(task.init, None)(jax.random.PRNGKey(0), batches[0])  # as run.py
    compiled = step.lower(state, batches[0]).compile()
    compile_s = time.perf_counter() - start
    for k in range(warmup):
        state, metrics = compiled(state, batches[k % len(batches)])
    jax.block_until_ready((state, metrics))
    start = time.perf_counter()
    for k in range(steps):
        state, metrics = compiled(state, batches[k % len(batches)])
    jax.block_until_ready((state, metrics))
    return steps / (time.perf_counter() - start), compile_s


def part_throughput(save: Saver, quick: bool) -> None:
    import jax
    import numpy as np

    from experiments import fashion_cnn, shakespeare_lstm
    from jaxdl import configs, data, tasks

    steps, warmup = (5, 2) if quick else (300, 50)
    rows = []
    for name, module in (("cnn", fashion_cnn), ("lstm", shakespeare_lstm)):
        base = module.get_config()
        inputs = data.build_input(configs.resolve(base).data, 0)
        batches = [jax.device_put(inputs.train.batch(k)) for k in range(10)]
        for dtype in ("float32", "bfloat16"):
            config = module.get_config()
            config.train.compute_dtype = dtype
            task = tasks.build(config, inputs.info, 1000)
            rate, compile_s = _step_rate(task, batches, steps, warmup)
            items = rate * inputs.items_per_batch
            rows.append(
                dict(model=name, dtype=dtype, steps_s=rate, items_s=items, unit=inputs.item_unit)
            )
            rows[-1]["compile_s"] = round(compile_s, 1)
            save["rows"] = rows
    # The matmul-bound model: bench/scale.py's MLP (hidden 4096 x 4: 53.6M parameters).
    hidden, batch = ((512, 512), 64) if quick else ((4096,) * 4, 8192)
    mlp_rows = []
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, batch).astype(np.int32)
    batches = [jax.device_put({"image": images, "label": labels})]
    for dtype in ("float32", "bfloat16"):
        config = configs.base_config(model="mlp")
        config.model.hidden = hidden
        config.data.batch_size = batch
        config.train.compute_dtype = dtype
        task = tasks.build(config, {"class_names": list("0123456789")}, 1000)
        abstract = jax.eval_shape(task.init, jax.random.PRNGKey(0), batches[0])
        params = sum(x.size for x in jax.tree.leaves(abstract.params))
        weights = sum(x.size for x in jax.tree.leaves(abstract.params) if x.ndim == 2)
        rate, compile_s = _step_rate(task, batches, 3 if quick else 50, 1 if quick else 5)
        flops = 6 * weights * batch * rate
        kind = jax.devices()[0].device_kind
        peak = next((p[dtype] for key, p in PEAKS if key in kind), None)
        mlp_rows.append(
            dict(
                dtype=dtype,
                params=params,
                batch=batch,
                steps_s=rate,
                tflops=flops / 1e12,
                peak_tflops=peak / 1e12 if peak else None,
                fraction=flops / peak if peak else None,
                compile_s=round(compile_s, 1),
            )
        )
        save["mlp"] = mlp_rows


def part_sweep(save: Saver, quick: bool) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from experiments import fashion_cnn_tiny
    from jaxdl import configs, data, tasks
    from jaxdl.train.grouping import vmapped_values
    from jaxdl.train.mesh import jit_unoptimised
    from jaxdl.train.trials import TrialStarts, VmappedTask

    ks, steps = ((1, 4), 5) if quick else (SWEEP_KS, 100)
    sequential_trials = 2 if quick else 8

    def trial_config(j: int):
        config = fashion_cnn_tiny.get_config()
        config.model.batch_norm = False
        config.optimizer.learning_rate = LEARNING_RATES[j % len(LEARNING_RATES)]
        config.seed = j // len(LEARNING_RATES)
        return configs.resolve(config)

    base = trial_config(0)
    inputs = data.build_input(base.data, 0)
    distinct = 10  # batches cycled: the work of a step does not depend on its pixels
    pool = [inputs.train.batch(k) for k in range(distinct + max(ks))]

    def program(k: int):
        """The K-trial task, its compiled init and step (all K at once), and its inputs."""
        trial_configs = [trial_config(j) for j in range(k)]
        values = vmapped_values(trial_configs)
        factory = lambda v: tasks.build(base, inputs.info, steps, v)
        task = VmappedTask(factory, values, k, k)
        stacked = [
            jax.device_put({n: np.stack([pool[s + j][n] for j in range(k)]) for n in pool[0]})
            for s in range(distinct)
        ]
        rngs = np.stack([jax.random.PRNGKey(c.seed) for c in trial_configs])
        return task, task.starts(rngs), stacked

    def train(step, state, stacked) -> tuple:
        for s in range(steps):
            state, metrics = step(state, stacked[s % distinct])
        return jax.block_until_ready((state, metrics))

    def compiled(task, starts, stacked):
        init = jit_unoptimised(task.init, None)  # as run.py compiles it
        state = init(starts, stacked[0])
        step = jax.jit(task.train_step, donate_argnums=0).lower(state, stacked[0]).compile()
        return init, step

    rows = []
    losses = {}
    for k in ks:
        task, starts, stacked = program(k)
        start = time.perf_counter()
        init, step = compiled(task, starts, stacked)
        compile_s = time.perf_counter() - start
        jax.block_until_ready(train(step, init(starts, stacked[0]), stacked))  # warm
        start = time.perf_counter()
        _, metrics = train(step, init(starts, stacked[0]), stacked)
        seconds = time.perf_counter() - start
        losses[k] = np.asarray(metrics["loss"])
        rows.append(dict(k=k, seconds=seconds, trials_s=k / seconds, compile_s=compile_s))
        save["vmapped"] = rows
    # One after another: the K=1 program, compiled once, for each trial in turn (its
    # optimizer numbers and key are inputs: every trial runs the same program).
    task, _, _ = program(1)
    trial_configs = [trial_config(j) for j in range(sequential_trials)]
    values = vmapped_values(trial_configs)
    pieces = [
        [jax.device_put({n: pool[s + j][n][None] for n in pool[0]}) for s in range(distinct)]
        for j in range(sequential_trials)
    ]
    starts = [
        TrialStarts(
            rngs=jnp.asarray(np.stack([jax.random.PRNGKey(c.seed)])),
            values={n: v[j : j + 1] for n, v in values.items()},
        )
        for j, c in enumerate(trial_configs)
    ]
    init, step = compiled(task, starts[0], pieces[0])
    train(step, init(starts[0], pieces[0][0]), pieces[0])  # warm
    start = time.perf_counter()
    final = []
    for j in range(sequential_trials):
        _, metrics = train(step, init(starts[j], pieces[j][0]), pieces[j])
        final.append(float(np.ravel(metrics["loss"])[0]))
    seconds = time.perf_counter() - start
    save["sequential"] = dict(
        trials=sequential_trials, seconds=seconds, trials_s=sequential_trials / seconds
    )
    k = next((k for k in ks if k >= sequential_trials), None)
    if k is not None:
        gap = np.abs(np.ravel(losses[k])[:sequential_trials] - np.asarray(final)).max()
        save["loss_gap"] = dict(k=k, trials=sequential_trials, max_abs=float(gap))
    save["steps"] = steps
    save["batch"] = base.data.batch_size


def _test_images(count: int):
    """The first `count` Fashion-MNIST test images, uint8 (N, 28, 28, 1), read from the
    IDX file here or in the bundle."""
    import gzip

    import numpy as np

    name = "fashion-mnist/t10k-images-idx3-ubyte.gz"
    shared = ROOT.parent / "shared" / "data"
    path = (
        next(
            p
            for p in (Path(os.environ.get("JAXDL_DATA_DIR", DATA)), shared, DATA)
            if (p / name).exists()
        )
        / name
    )
    with gzip.open(path) as f:
        pixels = np.frombuffer(f.read(), np.uint8, offset=16)
    return pixels.reshape(-1, 28, 28, 1)[:count]


def _restored_logits(workdir: Path):
    import numpy as np

    from jaxdl.train.run_info import load_run

    _, _, task, state = load_run(workdir)
    return np.asarray(task.logits(state, _test_images(RESTORE_IMAGES)))


def part_restore(save: Saver, quick: bool) -> None:
    import jax
    import numpy as np

    if not CPU_LOGITS.exists():
        save["note"] = "no .device/cpu_run: make device-bundle"
        return
    record = json.loads((CPU_RUN / "run.json").read_text())
    save["trained_on"] = record.get("backend")
    save["here"] = jax.default_backend()
    logits = _restored_logits(CPU_RUN)
    reference = np.load(CPU_LOGITS)
    save["max_abs_diff"] = float(np.abs(logits - reference).max())
    save["logit_scale"] = float(np.abs(reference).max())
    save["same_class"] = float((logits.argmax(-1) == reference.argmax(-1)).mean())


def part_cache(save: Saver, quick: bool) -> None:
    config = "fashion_cnn_tiny" if quick else "fashion_cnn"
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for mode in ("cold", "warm"):
            workdir = Path(tmp) / mode
            command = [sys.executable, str(ROOT / "launch/train.py")]
            command += [f"--config={ROOT}/experiments/{config}.py", f"--workdir={workdir}"]
            command += ["--config.train.num_steps=2", "--config.train.log_every=1"]
            command += ["--config.train.plot=False", f"--compile_cache={cache}"]
            metrics = workdir / "metrics.jsonl"
            start = time.perf_counter()
            process = subprocess.Popen(
                command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            first = None
            while process.poll() is None:
                if first is None and metrics.exists() and metrics.stat().st_size:
                    first = time.perf_counter() - start
                time.sleep(0.01)
            wall = time.perf_counter() - start
            stderr = process.stderr.read()
            line = [x for x in stderr.splitlines() if "compile cache" in x]
            save[mode] = dict(
                first_step_s=first or wall,
                wall_s=wall,
                exit=process.returncode,
                cache_line=line[-1] if line else "-",
            )
            if process.returncode:
                save[mode + "_stderr"] = stderr[-2000:]
        autotune = list(cache.glob("*/xla_gpu_per_fusion_autotune_cache_dir/**/*"))
        save["autotune_files"] = sum(p.is_file() for p in autotune)


PARTS = {
    "versions": part_versions,
    "restore": part_restore,
    "sweep": part_sweep,
    "throughput": part_throughput,
    "accuracy": part_accuracy,
    "cache": part_cache,
    "tests": part_tests,
}


# ---- The table -----------------------------------------------------------------------------
def _failed(part: dict) -> list[str]:
    if "error" not in part:
        return []
    return [f"- **{part['error']}**; the log's end:", "", "```", part["log_tail"][-1500:], "```"]


def render(r: dict, args) -> str:
    v = r.get("versions", {})
    lines = [
        "# Device check: jaxdl on " + str(v.get("devices", "?")),
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; `python bench/device_check.py"
        f"{' --quick' if args.quick else ''}`; {r['total_seconds']:.0f} s in all; "
        f"{platform.machine()}, {os.cpu_count()} cores",
    ]
    if r["missing_modules"]:
        lines.append(f"- modules missing: {r['missing_modules']} (add them to DEVICE_WHEELS)")
    for name, section in SECTIONS.items():
        if name in r:
            lines += section(r[name]) + _failed(r[name])
    return "\n".join(lines) + "\n"


def _versions(v: dict) -> list[str]:
    return [
        f"- Python {v.get('python', '?')}; "
        + ", ".join(f"{k} {x}" for k, x in v.get("packages", {}).items()),
        f'- backend {v.get("backend", "?")}, {v.get("memory_gib", "?")} GiB; "auto" there: '
        f"{v.get('auto', '?')}; float32 matmul at the default precision vs HIGHEST: relative "
        f"error {v.get('float32_matmul_rel_error', float('nan')):.1e} (~1e-7 full float32, "
        "~1e-4 or more TF32)",
    ]


def _restore(r: dict) -> list[str]:
    lines = ["", "## A run trained on CPU, read here", ""]
    if "note" in r:
        return [*lines, f"- {r['note']}"]
    if "max_abs_diff" not in r:
        return lines
    return [
        *lines,
        f"- .device/cpu_run (experiments/fashion_cnn_tiny.py, 20 steps) trained on "
        f"{r['trained_on']}; read with load_run on {r['here']}: logits of "
        f"{RESTORE_IMAGES} test images differ by at most **{r['max_abs_diff']:.2e}** "
        f"(largest logit {r['logit_scale']:.2f}); the same class for "
        f"**{r['same_class']:.1%}** of them",
    ]


def _tests(t: dict) -> list[str]:
    lines = ["", "## Tests (the device-relevant subset)", ""]
    lines += [f"- `{t.get('command', '?')}`: **{t.get('summary', '?')}**"]
    return lines + [f"  - {x}" for x in t.get("failed", [])]


def _accuracy(a: dict) -> list[str]:
    reached = a.get("reached")
    lines = ["", "## The default experiment: time to 92% test accuracy", ""]
    lines += [f"- `{a.get('command', '?')}`: whole command {a.get('wall_s', '?')} s"]
    lines += [f"- its log: {a.get('backend_line', '?')}"]
    if reached:
        lines += [
            f"- **92% at step {reached[0]}, {reached[1]} s** of the trainer's clock (from "
            "its start: data, compiling and evals included)"
        ]
    else:
        lines += ["- **92% not reached**"]
    lines += [f"- final test accuracy {a.get('final')}; evals (step, s, accuracy):"]
    if a.get("exit"):
        lines += [f"- **the launch failed (exit {a['exit']})**:", "```", a["stderr_tail"], "```"]
    return [*lines, f"  {a.get('curve', [])}"]


def _throughput(p: dict) -> list[str]:
    lines = ["", "## Train-step throughput (bare compiled step, batches on the device)", ""]
    lines += ["| model | compute | steps/s | items/s | compile s |", "|---|---|---|---|---|"]
    for row in p.get("rows", []):
        lines.append(
            f"| {row['model']} | {row['dtype']} | {row['steps_s']:.1f} | "
            f"{row['items_s']:,.0f} {row['unit']} | {row['compile_s']} |"
        )
    lines += ["", "| MLP, params, batch | compute | steps/s | model TFLOP/s | peak | fraction |"]
    lines += ["|---|---|---|---|---|---|"]
    for row in p.get("mlp", []):
        peak = f"{row['peak_tflops']:.0f}" if row["peak_tflops"] else "n/a"
        fraction = f"**{row['fraction']:.1%}**" if row["fraction"] else "n/a"
        lines.append(
            f"| {row['params'] / 1e6:.1f}M, {row['batch']} | {row['dtype']} | "
            f"{row['steps_s']:.1f} | {row['tflops']:.2f} | {peak} | {fraction} |"
        )
    return [
        *lines,
        "",
        "Model FLOPs = 6 x weights x batch per step; peaks: dense bfloat16 tensor cores, "
        "float32 against TF32's (what XLA's default precision allows on Ampere and later).",
    ]


def _sweep(s: dict) -> list[str]:
    seq = s.get("sequential", {})
    one = seq.get("trials_s")
    lines = ["", "## The vmapped sweep: K tiny-CNN trials", ""]
    lines += [
        f"Each trial {s.get('steps', '?')} steps of {s.get('batch', '?')} images "
        "(experiments/fashion_cnn_tiny.py, no batch norm; learning rates "
        f"{list(LEARNING_RATES)} x seeds); a trial's time is its init and steps, compiling "
        f"not counted (shown). One after another: the K=1 program run for "
        f"{seq.get('trials', '?')} trials in turn, **{one or float('nan'):.2f} trials/s** "
        "(the same for any K). K=1 runs the program one after another runs: its speed-up "
        "shows the measurement's noise.",
        "",
        "| K | vmapped s | vmapped trials/s | one after another trials/s | speed-up | compile s |",
        "|---|---|---|---|---|---|",
    ]
    for row in s.get("vmapped", []):
        up = f"**{row['trials_s'] / one:.1f}x**" if one else "?"
        lines.append(
            f"| {row['k']} | {row['seconds']:.2f} | {row['trials_s']:.2f} | "
            f"{one or float('nan'):.2f} | {up} | {row['compile_s']:.1f} |"
        )
    if "loss_gap" in s:
        g = s["loss_gap"]
        lines += [
            "",
            f"Largest |last train loss, vmapped (K={g['k']}) - one after another| over its "
            f"first {g['trials']} trials: {g['max_abs']:.2e}.",
        ]
    return lines


def _cache(c: dict) -> list[str]:
    lines = ["", "## Compile cache: a 2-step launch of the default experiment", ""]
    lines += ["| cache | to first step s | whole command s | its line |", "|---|---|---|---|"]
    failed = []
    for mode in ("cold", "warm"):
        m = c.get(mode)
        if m:
            lines.append(
                f"| {mode} | {m['first_step_s']:.1f} | {m['wall_s']:.1f} | {m['cache_line']} |"
            )
        if m and m["exit"]:
            failed += [f"- **{mode} launch failed (exit {m['exit']})**:", "```"]
            failed += [c[mode + "_stderr"], "```"]
    autotune = f"XLA GPU autotuning files kept in the cache: {c.get('autotune_files')}."
    return [*lines, "", autotune, *failed]


SECTIONS = {
    "versions": _versions,
    "restore": _restore,
    "tests": _tests,
    "accuracy": _accuracy,
    "throughput": _throughput,
    "sweep": _sweep,
    "cache": _cache,
}


if __name__ == "__main__":
    main()
