"""launch/_tool.py's wrapper, in a launcher of its own."""

import subprocess
import sys
from pathlib import Path

LAUNCH = Path(__file__).resolve().parents[2] / "launch"
ERROR = "could not save checkpoint 3: no space left on device"


def run_launcher(tmp_path: Path, setup: str, main_body: str) -> subprocess.CompletedProcess:
    """A launcher wrapped by tool_main whose main runs `main_body`, then raises the
    UserError a save on a full disk ends with."""
    script = tmp_path / "launcher.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(LAUNCH)!r})\n"
        "from _tool import tool_main\n"
        "from absl import app\n"
        "from jaxdl.errors import UserError\n"
        f"{setup}\n"
        "@tool_main\n"
        "def main():\n"
        f"    {main_body}\n"
        f"    raise UserError({ERROR!r})\n"
        "app.run(main)\n"
    )
    return subprocess.run(
        [sys.executable, str(script), "--compile_cache=off"], capture_output=True, text=True
    )


def test_an_unawaited_coroutine_at_exit_prints_nothing_after_the_error_line(tmp_path):
    # What a save that failed on a full disk leaves: orbax coroutines never awaited,
    # collected at exit (before, two RuntimeWarning lines followed the error line).
    setup = "async def save():\n    pass\npending = []"
    done = run_launcher(tmp_path, setup, "pending.append(save())")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"error: {ERROR}", done.stderr
    assert "never awaited" not in done.stderr


def test_an_orbax_future_whose_error_was_never_retrieved_prints_nothing(tmp_path):
    # The other thing a save on a full disk leaves: orbax's gathered writes that failed,
    # never retrieved, which asyncio logs with their tracebacks when they are collected
    # (before, those were the run's last lines: their message names no orbax file, only
    # the traceback's frames do).
    setup = (
        "import asyncio\n"
        "source = 'async def write():\\n    raise ValueError(\"No space left on device\")'\n"
        "exec(compile(source, '/site-packages/orbax/checkpoint/writes.py', 'exec'))\n"
        "async def save():\n"
        "    await asyncio.wait([asyncio.gather(write())])\n"
    )
    done = run_launcher(tmp_path, setup, "asyncio.run(save())")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"error: {ERROR}", done.stderr
    assert "never retrieved" not in done.stderr and "Traceback" not in done.stderr
