"""Cross-validation: one training run per held-out fold and seed (a sweep over
`data.fold` and `seed`), the per-fold table with mean ± std of the final eval metric, and
with several seeds per fold, the accuracy of their ensemble."""

import json
import math
import statistics
from pathlib import Path

import jax
import numpy as np

from jaxdl.data import build_input, read_all
from jaxdl.errors import check
from jaxdl.sweeps import runner as sweep_lib
from jaxdl.train.run_info import load_run
from jaxdl.train.writers import read_metrics

SUMMARY = "crossval"  # crossval.md and crossval.json in the sweep directory
ENSEMBLE = "ensemble/accuracy"


def trials(folds: list[int], seeds: list[int]) -> list[dict]:
    """Overrides of each run: every fold, and for several seeds, every seed of each fold
    (one seed: no seed override, so the run names stay `000_fold=0`)."""
    if len(seeds) == 1:
        return [{"data.fold": k} for k in folds]
    return [{"data.fold": k, "seed": s} for k in folds for s in seeds]


def ensemble_probabilities(workdirs: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(the mean predicted class probabilities of the runs' newest checkpoints, the labels)
    on their (shared) eval set, rebuilt as the trainer built it."""
    probabilities = []
    for workdir in workdirs:
        config, _, task, state = load_run(workdir)
        check(
            hasattr(task, "predict"),
            f"a {config.task.name!r} task has no predict(): no ensemble of its runs",
        )
        if not probabilities:
            eval_arrays = read_all(build_input(config.data, config.seed).eval)
        probabilities.append(jax.device_get(jax.jit(task.predict)(state, eval_arrays["tokens"])[0]))
    return np.mean(probabilities, axis=0), eval_arrays["label"]


def ensemble_accuracy(workdirs: list[Path]) -> float:
    """Accuracy of `ensemble_probabilities`."""
    probabilities, labels = ensemble_probabilities(workdirs)
    return float((probabilities.argmax(-1) == labels).mean())


def fold_rows(sweep: sweep_lib.Sweep, metric: str) -> list[dict]:
    """One row per fold: its status (done when all its runs are), each run's final
    `metric` (`runs`, in seed order) and their mean, the ensemble's accuracy (several
    seeds), the runs' summed wall seconds and the share of eval words cut by the
    truncation limits (from run.json)."""
    by_fold: dict[int, list[dict]] = {}
    for trial in sweep.trials:
        by_fold.setdefault(trial["overrides"]["data.fold"], []).append(trial)
    rows = []
    for fold, fold_trials in by_fold.items():
        workdirs = [sweep.sweep_dir / t["name"] for t in fold_trials]
        done = all(t["status"] == "done" for t in fold_trials)
        finals = []
        for workdir in workdirs:
            values = [r[metric] for r in read_metrics(workdir) if metric in r]
            finals.append(values[-1] if values and done else None)
        run_json = workdirs[0] / "run.json"
        info = json.loads(run_json.read_text())["data"] if run_json.is_file() else {}
        walls = [t.get("wall_s") for t in fold_trials]
        statuses = {t["status"] for t in fold_trials}
        rows.append(
            {
                "fold": fold,
                "status": "done" if done else "/".join(sorted(statuses)),
                metric: statistics.fmean(finals) if done else None,
                "runs": finals,
                ENSEMBLE: ensemble_accuracy(workdirs) if done and len(workdirs) > 1 else None,
                "wall_s": sum(walls) if None not in walls else None,
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
    seeds = max(len(r["runs"]) for r in rows)
    done = [r[metric] for r in rows if r[metric] is not None]
    mean, std = mean_std(done) if done else (math.nan, math.nan)
    shown = lambda v, fmt: "" if v is None else format(v, fmt)
    per_run = f"{metric} of each seed | {ENSEMBLE} | " if seeds > 1 else ""
    lines = [
        f"# Cross-validation `{' '.join(sweep.base_args)}`",
        "",
        f"| fold | status | {metric}{' (mean of the seeds)' if seeds > 1 else ''} | "
        f"{per_run}wall s | eval words truncated |",
        "|---|---|---|" + "---|---|" * (seeds > 1) + "---|---|",
    ]
    for r in rows:
        runs = " ".join(shown(v, ".4f") for v in r["runs"])
        lines.append(
            f"| {r['fold']} | {r['status']} | {shown(r[metric], '.4f')} | "
            + (f"{runs} | {shown(r[ENSEMBLE], '.4f')} | " if seeds > 1 else "")
            + f"{shown(r['wall_s'], '.0f')} | {shown(r['truncated_share'], '.1%')} |"
        )
    lines += [
        "",
        f"**{metric}: {mean:.4f} ± {std:.4f}** (mean ± sample std over {len(done)} of "
        f"{len(rows)} folds{f'; each fold the mean of {seeds} seeds' if seeds > 1 else ''})",
        "",
    ]
    record = {"metric": metric, "mean": mean, "std": std, "seeds": seeds}
    ensembles = [r[ENSEMBLE] for r in rows if r[ENSEMBLE] is not None]
    if ensembles:
        ens_mean, ens_std = mean_std(ensembles)
        lines += [
            f"**{ENSEMBLE}: {ens_mean:.4f} ± {ens_std:.4f}** (the {seeds} seeds' mean "
            f"class probabilities; over {len(ensembles)} folds)",
            "",
        ]
        record.update(ensemble_mean=ens_mean, ensemble_std=ens_std)
    text = "\n".join(lines)
    (sweep.sweep_dir / f"{SUMMARY}.md").write_text(text)
    record["folds"] = rows
    (sweep.sweep_dir / f"{SUMMARY}.json").write_text(json.dumps(record, indent=1) + "\n")
    return text


def read_summary(sweep_dir: Path) -> dict:
    return json.loads((Path(sweep_dir) / f"{SUMMARY}.json").read_text())
