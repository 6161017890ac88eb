"""launch/_tool.py's wrapper, in a launcher of its own."""

import subprocess
import sys
from pathlib import Path

LAUNCH = Path(__file__).resolve().parents[2] / "launch"


def test_an_unawaited_coroutine_at_exit_prints_nothing_after_the_error_line(tmp_path):
    # What a save that failed on a full disk leaves: orbax coroutines never awaited,
    # collected at exit (before, two RuntimeWarning lines followed the error line).
    script = tmp_path / "launcher.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(LAUNCH)!r})\n"
        "from _tool import tool_main\n"
        "from absl import app\n"
        "from jaxdl.errors import UserError\n"
        "async def save():\n"
        "    pass\n"
        "pending = []\n"
        "@tool_main\n"
        "def main():\n"
        "    pending.append(save())\n"
        "    raise UserError('could not save checkpoint 3: no space left on device')\n"
        "app.run(main)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), "--compile_cache=off"], capture_output=True, text=True
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == "error: could not save checkpoint 3: no space left on device", lines
    assert "never awaited" not in done.stderr
