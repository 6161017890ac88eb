"""Shared fixtures: a small synthetic IDX data set and a launcher runner."""

import contextlib
import fcntl
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxdl.data.sources import write_idx
from jaxdl.train.mesh import QUICK_CPU_COMPILE

ROOT = Path(__file__).resolve().parents[1]


def _xla_flags(options: dict) -> str:
    return " ".join(f"--{name}={str(value).lower()}" for name, value in options.items())


# XLA's CPU compile options for the suite (WORKSPACE.md's notes on the suite's time): its
# own processes run each program once or twice, so they compile as train/mesh.py's
# QUICK_CPU_COMPILE does (no LLVM optimisations; eager ops too; read when the backend
# starts, after this); launchers keep LLVM's optimisations (runs of many steps; 1 vs 4
# devices agree to 1e-5) but not the newer emitters of fused loops, which compile slower.
IN_PROCESS_XLA_FLAGS = _xla_flags(QUICK_CPU_COMPILE)
LAUNCH_XLA_FLAGS = _xla_flags({"xla_cpu_use_fusion_emitters": False})
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {IN_PROCESS_XLA_FLAGS}".strip()


@pytest.fixture(scope="session", autouse=True)
def shared_compile_cache(tmp_path_factory) -> Path:
    """One persistent compilation cache for the whole session: this process, the other
    pytest-xdist workers (their temporary folders share a parent) and every launcher
    started by a test, so the many tiny runs compile each program once."""
    from jaxdl.train import compile_cache

    folder = session_root(tmp_path_factory) / "compile_cache"
    os.environ[compile_cache.ENV] = str(folder)
    compile_cache.enable(str(folder))
    return folder


@pytest.fixture(scope="session", autouse=True)
def fork_server(tmp_path_factory):
    """This worker's fork server (tests/forkserver.py), started before the first test so
    its imports overlap the first tests; its launches' output files live in this
    session's temporary folder. JAXDL_TEST_FORK_SERVER=0: none."""
    if os.environ.get(FORK_SERVER_ENV) == "0":
        yield None
        return
    server = _servers[os.getpid()] = ForkServer(tmp_path_factory.mktemp("forkserver"))
    yield server
    del _servers[os.getpid()]
    server.close()


def init_state(task, batch: dict, seed: int = 0):
    """A task's first state, compiled as the trainer compiles it (train/mesh.py's
    jit_unoptimised, as jit_quick): eager, its random-number code runs op by op, seconds a
    test."""
    import jax

    return jit_quick(task.init)(jax.random.PRNGKey(seed), batch)


def jit_quick(fn):
    """jax.jit for a test's programs whose assertions are properties or loose tolerances,
    not agreement to rounding with another compiled program: compiled with
    train/mesh.py's QUICK_CPU_COMPILE (its jit_unoptimised, as init is), which compiles a
    family's step markedly faster on CPU (WORKSPACE.md's CPU notes); the first call fixes
    its shapes."""
    from jaxdl.train.mesh import jit_unoptimised

    return jit_unoptimised(fn, None)


def make_images(num: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 28x28 images: class c lights a bright 7x7 block at a class position."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, num).astype(np.uint8)
    images = rng.integers(0, 60, (num, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        row, col = divmod(int(c), 4)
        images[i, 7 * row : 7 * row + 7, 7 * col : 7 * col + 7] += 150
    return images, labels


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory) -> Path:
    """A fashion-mnist folder of 640 train / 250 test synthetic images, one for every
    pytest-xdist worker: a run one worker made (shared_run) resumes in another with the
    same data.data_dir (another would be a config change, refused)."""

    def write(root: Path) -> None:
        folder = root / "fashion-mnist"
        folder.mkdir()
        for split, num, seed in (("train", 640, 0), ("t10k", 250, 1)):
            images, labels = make_images(num, seed)
            write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
            write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)

    return made_once(session_root(tmp_path_factory) / "synthetic_data", write)


def run_launcher(
    *args: str,
    devices: int = 1,
    timeout: float = 300,
    wait: bool = True,
    env: dict | None = None,
    plot: bool = False,
):
    """Runs launch/train.py in a fresh process (run_script) with `devices` CPU devices.
    Without `plot`, the run draws no metrics.png (matplotlib costs a second a run)."""
    if not plot and any(a.startswith("--config=") for a in args):
        args = (*args, "--config.train.plot=False")
    env = {**(env or {}), "XLA_FLAGS": launch_xla_flags(devices)}
    return run_script("launch/train.py", *args, timeout=timeout, wait=wait, env=env)


def launch_xla_flags(devices: int | None = None) -> str:
    """XLA_FLAGS of a launch: LAUNCH_XLA_FLAGS, with `devices` CPU devices if given."""
    devices_flag = "" if devices is None else f" --xla_force_host_platform_device_count={devices}"
    return LAUNCH_XLA_FLAGS + devices_flag


def run_script(
    script: str, *args: str, timeout: float = 300, wait: bool = True, env: dict | None = None
):
    """Runs ROOT/script with args in a fresh process on the CPU (its own JAX, with
    LAUNCH_XLA_FLAGS unless `env` names XLA_FLAGS), with `env` added to this process's
    environment: a child of this worker's fork server (its
    imports already done), or a new `python` where the server cannot stand in. Returns
    its CompletedProcess (text), or with `wait` False the running process (Popen's
    interface: poll, wait, communicate, send_signal, terminate, kill, pid)."""
    env = {**os.environ, "XLA_FLAGS": LAUNCH_XLA_FLAGS, **(env or {}), "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, str(ROOT / script), *args]
    server = _servers.get(os.getpid())
    if server is not None and server.serves(env):
        process = server.launch(command[1:], env, ROOT)
    else:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    if not wait:
        return process
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


FORK_SERVER_ENV = "JAXDL_TEST_FORK_SERVER"  # "0": every launch a fresh `python` process
_servers: dict[int, "ForkServer"] = {}  # this pytest process's (the fork_server fixture)


class ForkServer:
    """The client of tests/forkserver.py: launches run as its forked children."""

    # Read when Python starts or jax is imported, so a child could not take a new value:
    # a launch whose environment changes one of these runs as a fresh process instead.
    STARTUP_PREFIXES = ("PYTHON", "JAX_", "XLA_PYTHON")

    def __init__(self, folder: Path):
        self.env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        self.folder = folder
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "forkserver.py")],
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.numbers = itertools.count()

    def serves(self, env: dict) -> bool:
        startup = lambda e: {k: v for k, v in e.items() if k.startswith(self.STARTUP_PREFIXES)}
        return self.process.poll() is None and startup(env) == startup(self.env)

    def launch(self, argv: list, env: dict, cwd) -> "ForkedProcess":
        files = self.folder / str(next(self.numbers))
        request = {
            "argv": [str(a) for a in argv],
            "env": env,
            "cwd": str(cwd),
            **{name: f"{files}.{name}" for name in ("stdout", "stderr", "status")},
        }
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        pid = int(self.process.stdout.readline())
        return ForkedProcess(pid, request)

    def close(self) -> None:
        """Ends the server (its stdin closes); launches still running go on."""
        self.process.stdin.close()
        self.process.wait(timeout=60)


class ForkedProcess:
    """A launch running as a fork server's child, with the parts of subprocess.Popen that
    the tests use (its output arrives when it has ended)."""

    def __init__(self, pid: int, request: dict):
        self.pid = pid
        self.args = request["argv"]
        self.returncode = None
        self._files = request

    def poll(self) -> int | None:
        if self.returncode is None and os.path.exists(self._files["status"]):
            self.returncode = int(Path(self._files["status"]).read_text())
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.02)
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        read = lambda name: Path(self._files[name]).read_text(errors="replace")
        return read("stdout"), read("stderr")

    def send_signal(self, signal_number: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # ended, its status not yet written
                os.kill(self.pid, signal_number)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@pytest.fixture
def launch():
    return run_launcher


def session_root(tmp_path_factory) -> Path:
    """The folder every pytest-xdist worker of this session shares (their temporary
    folders' parent), or this session's own without workers."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if "PYTEST_XDIST_WORKER" in os.environ else root


def made_once(folder: Path, make) -> Path:
    """`folder`, filled by `make(folder)` once a session, by whichever worker asks first
    (the others wait on its lock)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".made").exists():
            make(folder)
            (folder / ".made").touch()
    return folder


def shared_run(tmp_path_factory, name: str, start):
    """(workdir, result) of a run made once a session by `start(workdir)` (a finished
    subprocess), whichever worker asks first: for tests that read a run and never change
    it (a test that extends one copies it first)."""

    def run(folder: Path) -> None:
        result = start(folder / "run")
        outcome = [result.returncode, result.stdout, result.stderr]
        (folder / "result.json").write_text(json.dumps(outcome))

    folder = made_once(session_root(tmp_path_factory) / "shared_runs" / name, run)
    returncode, stdout, stderr = json.loads((folder / "result.json").read_text())
    return folder / "run", subprocess.CompletedProcess(name, returncode, stdout, stderr)


@pytest.fixture(scope="session")
def tiny_vae_run(synthetic_data_dir, tmp_path_factory):
    """A finished 20-step run of experiments/fashion_vae_tiny.py (conv): (workdir, result).
    Shared: its own test checks what it wrote, others serve or read it."""
    return shared_run(
        tmp_path_factory,
        "tiny_vae",
        lambda workdir: run_launcher(
            f"--config={ROOT}/experiments/fashion_vae_tiny.py",
            f"--workdir={workdir}",
            f"--config.data.data_dir={synthetic_data_dir}",
            "--config.model.arch=conv",
        ),
    )


@pytest.fixture(scope="session")
def tiny_cgan_run(synthetic_data_dir, tmp_path_factory):
    """A finished 6-step run of experiments/fashion_cgan_tiny.py whose steps 1-2 train the
    autoencoder: (workdir, result). Shared: the GAN test checks and resumes a copy of it,
    the labelled-data test samples from it."""
    return shared_run(
        tmp_path_factory,
        "tiny_cgan",
        lambda workdir: run_launcher(
            *tiny_cgan_args(synthetic_data_dir), f"--workdir={workdir}", plot=True
        ),
    )


def tiny_cgan_args(data_dir) -> tuple:
    """The launcher flags of the tiny_cgan_run (its workdir aside)."""
    return (
        f"--config={ROOT}/experiments/fashion_cgan_tiny.py",
        f"--config.data.data_dir={data_dir}",
        "--config.task.pretrain_steps=2",  # steps 1-2: the autoencoder phase
    )


POLARITY_WORDS = {
    0: ["dull", "boring", "awful", "mess", "waste"],
    1: ["great", "superb", "moving", "fun", "brilliant"],
}


def write_polarity_archive(path: Path, per_fold: int = 2, seed: int = 0) -> None:
    """A review_polarity.tar.gz of `per_fold` neg + `per_fold` pos reviews per fold
    (cv0xx ... cv9xx), each a few sentences of common words and label words."""
    import io
    import tarfile

    rng = np.random.default_rng(seed)
    common = ["the", "film", "is", "a", "and", "plot", "actor", "caf\xe9"]
    with tarfile.open(path, "w:gz") as tar:
        for fold in range(10):
            for label, polarity in enumerate(("neg", "pos")):
                for i in range(per_fold):
                    sentences = [
                        " ".join(rng.choice(common + POLARITY_WORDS[label], rng.integers(2, 9)))
                        for _ in range(rng.integers(1, 7))
                    ]
                    data = ("\n".join(sentences) + "\n").encode("latin-1")
                    name = f"txt_sentoken/{polarity}/cv{fold}{label}{i}_{1000 + i}.txt"
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="session")
def polarity_data_dir(tmp_path_factory) -> Path:
    """A data dir with a synthetic review_polarity/review_polarity.tar.gz (40 reviews)."""
    root = tmp_path_factory.mktemp("polarity")
    (root / "review_polarity").mkdir()
    write_polarity_archive(root / "review_polarity" / "review_polarity.tar.gz")
    return root
