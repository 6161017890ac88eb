"""Run any jaxdl command as N processes of one JAX job on this machine (as torchrun does
for PyTorch):

    python launch/multiprocess.py --num_processes=2 --devices_per_process=2 -- \\
        launch/train.py --config=experiments/fashion_cnn.py --workdir=runs/cnn

Each process gets its share of the CPU cores, `--devices_per_process` simulated CPU
devices, and in its environment the coordinator (127.0.0.1 and a free port), the process
count and its index, which launch/train.py reads to join the job (collectives over gloo).
Process 0's output passes through; the others' lines are prefixed `[process i]`.
SIGTERM and SIGINT are passed on to every process (a trainer then saves the same step on
all of them and exits; SIGKILL for any left after STOP_TIMEOUT_S). When one process fails
or dies, one line says which, the others are ended within seconds (a trainer reads it
on a pipe and exits at once: its collectives would fail or wait for the dead one, and
nothing more can be saved; anything else gets SIGTERM; SIGKILL for any left after
FAILED_STOP_S), and its exit code is this command's: rerunning it resumes from the last
complete checkpoint. The processes die with this launcher.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

from absl import app, flags

flags.DEFINE_integer("num_processes", 2, "Processes to start.")
flags.DEFINE_integer("devices_per_process", 1, "Simulated CPU devices in each process.")
FLAGS = flags.FLAGS
STOP_TIMEOUT_S = 120.0  # after a signal passed on: every process saves, then exits
FAILED_STOP_S = 5.0  # after one failed: the others can only exit


def _relay(stream, prefix: str) -> None:
    for line in iter(stream.readline, ""):
        sys.stderr.write(prefix + line)
    stream.close()


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode  # killed by signal N: 128 + N


def _how(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"


def main(argv: list[str]) -> int:
    from jaxdl.train import processes

    command = argv[1:]
    if not command:
        raise app.UsageError("give the command to run after --, e.g. -- launch/train.py ...")
    if FLAGS.num_processes < 1 or FLAGS.devices_per_process < 1:
        print("error: --num_processes and --devices_per_process must be >= 1", file=sys.stderr)
        return 1
    if command[0].endswith(".py"):
        command = [sys.executable, *command]
    cores = sorted(os.sched_getaffinity(0))
    share = max(1, len(cores) // FLAGS.num_processes)
    coordinator = f"127.0.0.1:{processes.free_port()}"
    children, relays, pipes = [], [], []
    for index in range(FLAGS.num_processes):
        watch, tell = os.pipe()  # a line on it: another process failed (processes.watch_job)
        pipes.append(tell)
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
            f"--xla_force_host_platform_device_count={FLAGS.devices_per_process}".strip(),
            processes.COORDINATOR_ENV: coordinator,
            processes.NUM_PROCESSES_ENV: str(FLAGS.num_processes),
            processes.PROCESS_ID_ENV: str(index),
            processes.JOB_PIPE_ENV: str(watch),
        }
        own = cores[(index * share) % len(cores) :][:share] or cores

        def prepare(own=own) -> None:
            processes.die_with_parent()
            os.sched_setaffinity(0, own)

        piped = subprocess.PIPE if index else None
        child = subprocess.Popen(
            command,
            env=env,
            preexec_fn=prepare,
            stdout=piped,
            stderr=piped,
            text=True,
            pass_fds=(watch,),
        )
        os.close(watch)
        children.append(child)
        for stream in (child.stdout, child.stderr) if index else ():
            relay = threading.Thread(target=_relay, args=(stream, f"[process {index}] "))
            relay.start()
            relays.append(relay)
    print(
        f"{len(children)} processes (pids {' '.join(str(c.pid) for c in children)}), "
        f"coordinator {coordinator}",
        file=sys.stderr,
        flush=True,
    )

    signalled = []  # the signals passed on

    def forward(signum, frame) -> None:
        if frame is not None:
            signalled.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, forward)
    failed, deadline = None, None
    while any(child.poll() is None for child in children):
        if failed is None:
            failed = next((c for c in children if c.poll() not in (None, 0)), None)
            if failed is not None:  # one failed: end the others rather than hang
                line = f"process {children.index(failed)} failed ({_how(failed.returncode)})"
                print(f"{line}: stopping the others", file=sys.stderr, flush=True)
                for child, tell in zip(children, pipes, strict=True):
                    if child.poll() is None:
                        with contextlib.suppress(OSError):  # it has just ended
                            os.write(tell, f"{line}\n".encode())
                forward(signal.SIGTERM, None)
                deadline = time.time() + FAILED_STOP_S
        if deadline is None and signalled:
            deadline = time.time() + STOP_TIMEOUT_S
        if deadline is not None and time.time() > deadline:
            for child in children:
                if child.poll() is None:
                    child.kill()
        time.sleep(0.05)
    for tell in pipes:
        os.close(tell)
    for relay in relays:
        relay.join()
    failed = failed or next((c for c in children if c.returncode != 0), None)
    return _exit_code(failed.returncode) if failed else 0


if __name__ == "__main__":
    app.run(main)
