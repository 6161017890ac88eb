"""PNG plots of metrics.jsonl rows (train.read_metrics reads them): one panel per metric,
one line per run. Given rows, not run directories: the trainer draws with it."""

import math
from pathlib import Path

PLOT_FILE = "metrics.png"

# Positive values spanning more than this ratio are drawn on a log axis.
_LOG_SCALE_RATIO = 100.0


def plot_runs(runs: dict, metrics: list[str], path: Path, title: str = "") -> Path:
    """Plots `metrics` (e.g. "train/loss") against step for each run ({label: its
    metrics rows}); a run's non-finite values are marked where they occurred."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(metrics), 1, figsize=(7, 2.4 * len(metrics)), sharex=True, squeeze=False
    )
    spans = {name: [math.inf, 0.0] for name in metrics}  # (min, max) of finite values
    for label, rows in runs.items():
        for ax, name in zip(axes[:, 0], metrics, strict=True):
            points = [(r["step"], float(r[name])) for r in rows if name in r]
            finite = [(s, v) for s, v in points if math.isfinite(v)]
            for _, value in finite:
                spans[name] = [min(spans[name][0], value), max(spans[name][1], value)]
            color = None
            if finite:
                color = ax.plot(*zip(*finite, strict=True), label=label)[0].get_color()
            first_bad = next((s for s, v in points if not math.isfinite(v)), None)
            if first_bad is not None:
                ax.axvline(first_bad, color=color or "red", linestyle="--", linewidth=1)
                ax.annotate(
                    f" {label}: non-finite",
                    (first_bad, 0.9),
                    xycoords=("data", "axes fraction"),
                    color=color or "red",
                    fontsize=8,
                )
    for ax, name in zip(axes[:, 0], metrics, strict=True):
        ax.set_ylabel(name)
        low, high = spans[name]
        if low > 0 and high > _LOG_SCALE_RATIO * low:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("step")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_metrics(rows: list[dict], workdir: Path) -> Path | None:
    """Every train/ and eval/ metric of one run's rows into workdir/metrics.png."""
    names = sorted({k for row in rows for k in row if k.startswith(("train/", "eval/"))})
    if not names:
        return None
    return plot_runs({Path(workdir).name: rows}, names, Path(workdir) / PLOT_FILE)


def plot_lineage(workdirs: dict, path: Path, number: str = "learning_rate") -> Path | None:
    """Population-based training: each trial's `number` against step (lineage.jsonl of
    each run, {label: workdir}), a dot where the trial copied another."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lineages = {}
    for label, workdir in workdirs.items():
        file = Path(workdir) / "lineage.jsonl"
        if file.is_file():
            lineages[label] = [json.loads(x) for x in file.read_text().splitlines() if x.strip()]
    if not lineages:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for label, rows in lineages.items():
        line = ax.step(
            [r["step"] for r in rows], [r[number] for r in rows], where="post", label=label
        )[0]
        copies = [r for r in rows if r["copied"]]
        ax.scatter([r["step"] for r in copies], [r[number] for r in copies], color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(number)
    ax.set_title("population-based training: each trial's number (dots: copied another)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
