"""Requests/s and latency of the generator server's POST /api/generate (issue 8).

    python bench/serve.py [--workdir=runs/bench/fashion_vae] [--requests=500] [--max_seconds=30]

Starts `launch/serve.py --workdir=... --port=0` on 127.0.0.1 as a user does, waits for its
first line, and sends each request as the page does: a JSON noise vector (a fresh one each
time, the noise of seed i) and, for a conditional run, a label; one keep-alive connection
per client. For each number of concurrent clients: --requests requests or --max_seconds,
whichever comes first, after 20 unmeasured ones; measured --repeats times, the median
shown. A reference row times the same work in-process without HTTP (`Service.png`: the
compiled generator and the PNG). A missing run is trained first with
experiments/fashion_vae.py's defaults (5 minutes). Writes bench/results/serve.md.
"""

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import common
import numpy as np
from absl import app, flags

from jaxdl.serve import Service, draw_noise
from jaxdl.train.run_info import load_run

flags.DEFINE_string("workdir", str(common.ROOT / "runs/bench/fashion_vae"), "Generator run.")
flags.DEFINE_integer("requests", 500, "Measured requests per row (at most).")
flags.DEFINE_float("max_seconds", 30.0, "Time limit of each row's measured requests.")
flags.DEFINE_list("clients", ["1", "4"], "Numbers of concurrent clients, one row each.")
flags.DEFINE_integer("repeats", 3, "Times each row is measured; the median one is shown.")
FLAGS = flags.FLAGS
WARMUP = 20


def start_server(workdir: Path) -> tuple[subprocess.Popen, str, int]:
    command = [sys.executable, str(common.ROOT / "launch/serve.py"), f"--workdir={workdir}"]
    server = subprocess.Popen(
        [*command, "--port=0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    banner = server.stdout.readline()
    if not banner.startswith("serving "):
        server.kill()
        sys.exit(f"launch/serve.py did not start: {' '.join(command)}")
    host, port = banner.rsplit("http://", 1)[1].strip().rstrip("/").rsplit(":", 1)
    return server, host, int(port)


def request_bodies(info: dict, count: int) -> list[bytes]:
    bodies = []
    for i in range(count):
        body = {"noise": draw_noise(i, info["noise_dim"], info["noise_distribution"]).tolist()}
        if info["conditional"]:
            body["label"] = i % len(info["class_names"])
        bodies.append(json.dumps(body).encode())
    return bodies


def load(host: str, port: int, bodies: list[bytes], clients: int, seconds: float) -> tuple:
    """Sends bodies[k] for k = 0, 1, ... from `clients` threads until all are sent or
    `seconds` pass; returns (latencies in seconds, wall seconds)."""
    latencies, lock, next_index = [], threading.Lock(), iter(range(len(bodies)))
    deadline = time.perf_counter() + seconds

    def client():
        connection = http.client.HTTPConnection(host, port, timeout=60)
        headers = {"Content-Type": "application/json"}
        while time.perf_counter() < deadline:
            with lock:
                index = next(next_index, None)
            if index is None:
                break
            start = time.perf_counter()
            connection.request("POST", "/api/generate", bodies[index], headers)
            response = connection.getresponse()
            png = response.read()
            elapsed = time.perf_counter() - start
            if response.status != 200 or not png.startswith(b"\x89PNG"):
                raise RuntimeError(f"request {index}: HTTP {response.status} {png[:200]!r}")
            with lock:
                latencies.append(elapsed)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - start


def in_process(service: Service, info: dict, count: int, seconds: float) -> tuple:
    noises = [
        draw_noise(i, info["noise_dim"], info["noise_distribution"]) for i in range(WARMUP + count)
    ]
    labels = [i % max(1, len(service.class_names)) for i in range(WARMUP + count)]
    for noise, label in zip(noises[:WARMUP], labels, strict=False):
        service.png(noise, label)
    latencies, start = [], time.perf_counter()
    for noise, label in zip(noises[WARMUP:], labels[WARMUP:], strict=True):
        if time.perf_counter() - start >= seconds:
            break
        begin = time.perf_counter()
        service.png(noise, label)
        latencies.append(time.perf_counter() - begin)
    return latencies, time.perf_counter() - start


def row(what: str, measure) -> str:
    """`measure()` -> (latencies, wall) FLAGS.repeats times; the repeat of median
    requests/s is shown, with the range of requests/s over all repeats."""
    repeats = sorted((measure() for _ in range(FLAGS.repeats)), key=lambda r: len(r[0]) / r[1])
    rates = [len(latencies) / wall for latencies, wall in repeats]
    latencies, wall = repeats[len(repeats) // 2]
    ms = np.array(latencies) * 1000
    return (
        f"| {what} | {len(ms)} | {wall:.2f} | {len(ms) / wall:.0f} "
        f"({min(rates):.0f}-{max(rates):.0f}) | {np.median(ms):.1f} | "
        f"{np.percentile(ms, 90):.1f} |"
    )


def main(_) -> None:
    workdir = Path(FLAGS.workdir)
    if not (workdir / "checkpoints").is_dir():
        print(f"training fashion_vae into {workdir} ...", flush=True)
        common.train("experiments/fashion_vae.py", workdir, [])
    server, host, port = start_server(workdir)
    try:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        connection.request("GET", "/api/info")
        info = json.loads(connection.getresponse().read())
        connection.close()
        bodies = request_bodies(info, WARMUP + FLAGS.requests)
        load(host, port, bodies[:WARMUP], 1, FLAGS.max_seconds)
        rows = []
        for clients in (int(c) for c in FLAGS.clients):
            measure = lambda c=clients: load(host, port, bodies[WARMUP:], c, FLAGS.max_seconds)
            rows.append(row(f"HTTP, {clients} client{'s' * (clients > 1)}", measure))
    finally:
        server.terminate()
        server.wait()
    _, data_info, task, state = load_run(workdir)
    service = Service(task, state, data_info.get("class_names", []))
    measure = lambda: in_process(service, info, FLAGS.requests, FLAGS.max_seconds)
    rows.append(row("in-process `Service.png` (no HTTP)", measure))
    load_average = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    kind = "conditional" if info["conditional"] else "unconditional"
    table = "\n".join(
        [
            "# Generator server: POST /api/generate (bench/serve.py)",
            "",
            common.machine_line(),
            f"- load average (1, 5, 15 min) at the end: {load_average} (the machine is shared)",
            f"- run {workdir} ({info['title']}): {kind}, {info['noise_dim']} "
            f"{info['noise_distribution']} noise numbers -> {info['image_shape']} PNG",
            f"- launch/serve.py on {host}:{port} (Werkzeug threaded server); each request a "
            f"fresh JSON noise vector; at most {FLAGS.requests} requests or "
            f"{FLAGS.max_seconds:g} s per measurement, after {WARMUP} unmeasured; each row "
            f"the median of {FLAGS.repeats} measurements (range of requests/s in brackets)",
            "",
            "| how | requests | wall s | requests/s (range) | median ms | p90 ms |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    print(table)
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    (common.RESULTS / "serve.md").write_text(table)


if __name__ == "__main__":
    app.run(main)
