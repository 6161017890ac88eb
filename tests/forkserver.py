"""A fork server for the suite's launcher runs (tests/conftest.py's `run_launcher`).

One server per pytest worker imports jax, flax, optax, orbax and jaxdl once, then forks a
child per launch, which runs the script as `python SCRIPT ARGS...` would: its own argv,
environment, working directory, stdout, stderr and exit status. Each launch then skips
the second or so that every fresh Python spends importing them. No JAX backend exists
before the fork, so each child makes its own and reads its XLA_FLAGS (device count) then.

Protocol: the client writes one JSON line per launch to the server's stdin,
{"argv", "env", "cwd", "stdout", "stderr", "status"} (three file paths), and reads the
child's pid back as one line. When a child ends the server writes its returncode
(Popen's convention: -N for signal N) to `status`, under a temporary name then renamed.
The server ends when its stdin closes.
"""

import atexit
import json
import os
import runpy
import select
import sys
import traceback

PRELOAD = (
    "jax",
    "jax.numpy",
    "flax.linen",
    "optax",
    "orbax.checkpoint",
    "ml_collections.config_flags",
    "absl.app",
    "tensorboardX",
    "jaxdl.train.run",
    "jaxdl.tasks",
    "jaxdl.models",
)


def _run_child(request: dict) -> None:
    """In the forked child: becomes the launch, then exits with its status."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    script, *_ = sys.argv = list(request["argv"])
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python SCRIPT` sets it
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:  # sys.exit's conventions
        if isinstance(stop.code, int) or stop.code is None:
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _reap(status_paths: dict) -> None:
    while status_paths:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        path = status_paths.pop(pid)
        with open(path + ".tmp", "w") as f:
            f.write(str(os.waitstatus_to_exitcode(status)))
        os.replace(path + ".tmp", path)


def serve() -> None:
    for name in PRELOAD:
        __import__(name)
    requests, replies = os.dup(0), os.dup(1)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)  # nothing the server prints may reach the reply pipe
    status_paths: dict[int, str] = {}
    pending = b""
    while True:
        ready, _, _ = select.select([requests], [], [], 0.02)
        _reap(status_paths)
        if not ready:
            continue
        chunk = os.read(requests, 1 << 16)
        if not chunk:
            return  # the client (a pytest worker) is gone
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                os.close(requests)
                os.close(replies)
                _run_child(request)
            status_paths[pid] = request["status"]
            os.write(replies, f"{pid}\n".encode())


if __name__ == "__main__":
    serve()
