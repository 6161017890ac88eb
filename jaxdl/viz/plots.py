"""PNG plots of metrics.jsonl: one panel per metric, one line per run."""

import math
from pathlib import Path

from jaxdl.train.writers import read_metrics

PLOT_FILE = "metrics.png"

# Positive values spanning more than this ratio are drawn on a log axis.
_LOG_SCALE_RATIO = 100.0


def plot_runs(runs: dict, metrics: list[str], path: Path, title: str = "") -> Path:
    """Plots `metrics` (e.g. "train/loss") against step for each run ({label: workdir});
    a run's non-finite values are marked where they occurred."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(metrics), 1, figsize=(7, 2.4 * len(metrics)), sharex=True, squeeze=False
    )
    spans = {name: [math.inf, 0.0] for name in metrics}  # (min, max) of finite values
    for label, workdir in runs.items():
        rows = read_metrics(Path(workdir))
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


def plot_metrics(workdir: Path) -> Path | None:
    """Every train/ and eval/ metric of one run into workdir/metrics.png."""
    rows = read_metrics(Path(workdir))
    names = sorted({k for row in rows for k in row if k.startswith(("train/", "eval/"))})
    if not names:
        return None
    return plot_runs({Path(workdir).name: workdir}, names, Path(workdir) / PLOT_FILE)
