"""What a sweep or a search reports: one row per trial (its overrides, status, the final
ranking metric, its best value, every other final eval metric), the best finished
trial, summary.{csv,md}, summary.png (the metric against each axis) and the exit code.
Files are written where they are told; the rows are read from the trials' workdirs."""

import csv
import math
from pathlib import Path

from jaxdl.train.writers import read_metrics

SOME_TRIALS_FAILED = 3  # every trial ran, some failed (launch/train.py --vmap_trials too)
INTERRUPTED = 130  # a signal stopped the sweep; running it again resumes


def better(mode: str):
    """min or max: what ranks trials in `mode` ('min' or 'max')."""
    return min if mode == "min" else max


def trial_row(name: str, overrides: dict, status: str, workdir: Path, metric: str, mode: str):
    """A trial's row: its overrides and status, `final <metric>` and `best <metric>` (the
    last and the best of its logged values), `final eval/<x>` for every other eval
    metric it logged (its last value)."""
    rows = read_metrics(workdir)
    values = [float(r[metric]) for r in rows if metric in r]
    finite = [v for v in values if math.isfinite(v)]
    evals = {k: v for r in rows for k, v in r.items() if k.startswith("eval/") and k != metric}
    return {
        "trial": name,
        **overrides,
        "status": status,
        f"final {metric}": values[-1] if values else None,
        f"best {metric}": better(mode)(finite) if finite else None,
        **{f"final {k}": v for k, v in sorted(evals.items())},
    }


def best_row(rows: list[dict], metric: str, mode: str) -> dict | None:
    """The finished trial with the best final `metric`, if any finished."""
    finished = [r for r in rows if r["status"] == "done" and r[f"final {metric}"] is not None]
    return better(mode)(finished, key=lambda r: r[f"final {metric}"]) if finished else None


def exit_code(stopped: bool, statuses: list[str]) -> int:
    """INTERRUPTED when a signal stopped it, SOME_TRIALS_FAILED when a trial failed, else 0."""
    if stopped:
        return INTERRUPTED
    return SOME_TRIALS_FAILED if "failed" in statuses else 0


def write_table(
    sweep_dir: Path, rows: list[dict], best: dict | None, metric: str, title: str, errors: dict
) -> None:
    """summary.csv and summary.md: one row per trial, the best, each failure's error."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with (sweep_dir / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    shown = lambda v: "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
    lines = [
        f"# {title}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(shown(r.get(c)) for c in columns) + " |" for r in rows),
        "",
        f"Best: **{best['trial']}** ({metric} = {best[f'final {metric}']:.4g})"
        if best
        else "Best: none finished.",
        "",
    ]
    for name, error in errors.items():
        lines += [f"- {name} failed:", "", "```", error, "```", ""]
    (sweep_dir / "summary.md").write_text("\n".join(lines))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_PRUNED_STYLE = {"marker": "x", "color": "0.6", "label": "pruned (value at its stop)"}


def plot_axes(sweep_dir: Path, rows: list[dict], axes: list[str], metric: str, log_axes=()) -> None:
    """summary.png: the final metric of the finished trials against each axis of the
    trials' overrides; pruned trials apart (grey crosses: their value where they
    stopped, not a final one). An axis in `log_axes` (a log-uniform one), or one of
    positive numbers spanning over 10x, is drawn in log scale."""
    value = f"final {metric}"
    done = [r for r in rows if r["status"] == "done" and r[value] is not None]
    pruned = [r for r in rows if r["status"] == "pruned" and r[value] is not None]
    if not axes or not done + pruned:
        return
    plt = _pyplot()
    fig, panels = plt.subplots(1, len(axes), figsize=(3.6 * len(axes), 3), squeeze=False)
    for ax, name in zip(panels[0], axes, strict=True):
        xs = [r.get(name) for r in done + pruned]
        if all(isinstance(x, int | float) for x in xs):
            place = lambda x: x
            if name in log_axes or (min(xs) > 0 and max(xs) > 10 * min(xs)):
                ax.set_xscale("log")
        else:
            labels = sorted({str(x) for x in xs})
            place = lambda x, labels=labels: labels.index(str(x))
            ax.set_xticks(range(len(labels)), labels)
        for points, style in ((done, {"label": "finished"}), (pruned, _PRUNED_STYLE)):
            if points:
                ax.scatter(
                    [place(r.get(name)) for r in points], [r[value] for r in points], **style
                )
        if pruned:
            ax.legend(fontsize=7)
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(sweep_dir / "summary.png", dpi=100)
    plt.close(fig)


def plot_history(path: Path, curves: list[tuple], metric: str, legend: bool) -> None:
    """Each trial's eval values by step (`curves`: (label, [(step, value), ...], pruned)),
    pruned trials dashed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for label, points, was_pruned in curves:
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, "--" if was_pruned else "-", marker=".", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title("trials' eval values (dashed: pruned)")
    ax.grid(alpha=0.3)
    if ax.lines and legend:  # (none yet: every trial stopped before an eval)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
