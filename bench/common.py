"""What every bench script shares: running the launcher as a user does, and the header."""

import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benches import jaxdl from this checkout
RESULTS = ROOT / "bench" / "results"


def train(config: str, workdir: Path, overrides: list[str]) -> float:
    """Runs `launch/train.py --config=<config> --workdir=<workdir> <overrides>`; returns
    the wall seconds of the whole command (start-up, data, compilation, training, evals)."""
    command = [
        sys.executable,
        str(ROOT / "launch/train.py"),
        f"--config={ROOT / config}",
        f"--workdir={workdir}",
        *overrides,
    ]
    return timed_run(command)


def timed_run(command: list[str]) -> float:
    """Runs `command`; returns its wall seconds, or exits with its stderr's tail."""
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stderr[-3000:]}")
    return wall


def machine_line() -> str:
    return (
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: "
        f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores"
    )
