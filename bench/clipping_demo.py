"""What gradient clipping prevents: the same ReLU RNN run with and without clipping.

Runs experiments/shakespeare_rnn_noclip.py and experiments/shakespeare_rnn_clip.py (they
differ only in optimizer.clip) through launch/train.py, then reports how each ended and
plots both runs' per-step gradient global norm and loss.

    python bench/clipping_demo.py

Writes bench/results/clipping_demo.md and clipping_demo.png; the two run directories
(checkpoints, metrics.jsonl, each run's own metrics.png) are runs/clipping_demo/<experiment>.
"""

import shutil
import subprocess
import sys

import common

from jaxdl.train import read_metrics
from jaxdl.viz import plots

ROOT, RESULTS = common.ROOT, common.RESULTS
RUNS = {"no clipping": "shakespeare_rnn_noclip", "clip_by_global_norm(1.0)": "shakespeare_rnn_clip"}


def main() -> None:
    workdirs, lines = {}, []
    for label, experiment in RUNS.items():
        workdir = ROOT / "runs" / "clipping_demo" / experiment
        shutil.rmtree(workdir, ignore_errors=True)
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "launch/train.py"),
                f"--config={ROOT / 'experiments' / experiment}.py",
                f"--workdir={workdir}",
            ],
            capture_output=True,
            text=True,
        )
        workdirs[label] = workdir
        rows = read_metrics(workdir)
        train = [r for r in rows if "train/grad_norm" in r]
        evals = [r for r in rows if "eval/loss" in r]
        ended = (
            result.stderr.strip().splitlines()[-1].removeprefix("error: ")
            if result.returncode
            else f"finished {train[-1]['step']} steps"
        )
        peak = max(float(r["train/grad_norm"]) for r in train)
        lines.append(
            f"| {label} | {result.returncode} | {ended} | {peak:.3g} | "
            f"{evals[-1]['eval/loss']:.3f} |"
            if evals
            else f"| {label} | {result.returncode} | {ended} | {peak:.3g} | - |"
        )
    plot = plots.plot_runs(
        {label: read_metrics(workdir) for label, workdir in workdirs.items()},
        ["train/grad_norm", "train/loss"],
        RESULTS / "clipping_demo.png",
        "ReLU RNN on Tiny Shakespeare, SGD lr 0.1: gradient global norm (before clipping)",
    )
    table = "\n".join(
        [
            "# Clipping demo (bench/clipping_demo.py)",
            "",
            "Same model, data, seed and learning rate; only `optimizer.clip` differs.",
            "",
            "| run | exit | how it ended | peak grad norm | final eval nats/char |",
            "|---|---|---|---|---|",
            *lines,
            "",
            f"![gradient norm and loss per step]({plot.name})",
            "",
        ]
    )
    (RESULTS / "clipping_demo.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
