"""Cross-validation: one training run per held-out fold (a sweep over `data.fold`), and
the per-fold table with mean ± std of the final eval metric."""

import json
import math
import statistics
from pathlib import Path

from jaxdl.train import sweep as sweep_lib
from jaxdl.train.writers import read_metrics

SUMMARY = "crossval"  # crossval.md and crossval.json in the sweep directory


def fold_rows(sweep: sweep_lib.Sweep, metric: str) -> list[dict]:
    """One row per trial: its fold, status, final `metric`, wall seconds and the share of
    words cut by the truncation limits (from run.json)."""
    rows = []
    for trial in sweep.trials:
        workdir = sweep.sweep_dir / trial["name"]
        values = [r[metric] for r in read_metrics(workdir) if metric in r]
        run_json = workdir / "run.json"
        info = json.loads(run_json.read_text())["data"] if run_json.is_file() else {}
        rows.append(
            {
                "fold": trial["overrides"]["data.fold"],
                "status": trial["status"],
                metric: values[-1] if values and trial["status"] == "done" else None,
                "wall_s": trial.get("wall_s"),
                "truncated_share": info.get("truncated_share", {}).get("eval"),
            }
        )
    return rows


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); std is nan for a single value."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else math.nan


def write_summary(sweep: sweep_lib.Sweep, metric: str) -> str:
    """Writes crossval.md / .json in the sweep directory; returns the Markdown."""
    rows = fold_rows(sweep, metric)
    done = [r[metric] for r in rows if r[metric] is not None]
    mean, std = mean_std(done) if done else (math.nan, math.nan)
    shown = lambda v, fmt: "" if v is None else format(v, fmt)
    lines = [
        f"# Cross-validation `{' '.join(sweep.base_args)}`",
        "",
        f"| fold | status | {metric} | wall s | eval words truncated |",
        "|---|---|---|---|---|",
        *(
            f"| {r['fold']} | {r['status']} | {shown(r[metric], '.4f')} | "
            f"{shown(r['wall_s'], '.0f')} | {shown(r['truncated_share'], '.1%')} |"
            for r in rows
        ),
        "",
        f"**{metric}: {mean:.4f} ± {std:.4f}** (mean ± sample std over {len(done)} of "
        f"{len(rows)} folds)",
        "",
    ]
    text = "\n".join(lines)
    (sweep.sweep_dir / f"{SUMMARY}.md").write_text(text)
    record = {"metric": metric, "mean": mean, "std": std, "folds": rows}
    (sweep.sweep_dir / f"{SUMMARY}.json").write_text(json.dumps(record, indent=1) + "\n")
    return text


def read_summary(sweep_dir: Path) -> dict:
    return json.loads((Path(sweep_dir) / f"{SUMMARY}.json").read_text())
