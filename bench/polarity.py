"""Review polarity v2.0, 10-fold cross-validation: the hierarchical attention network
beside a bag-of-words logistic regression on the same folds.

    python bench/polarity.py [--han_dir=runs/bench/polarity_han] [--han_seeds=N]
                             [--skip_han] [--reuse_bow] [--han_summary_only]

Baseline (jaxdl/evaluation/bow.py): binary unigram + bigram presence (n-grams in >= 2 training
documents), L2 logistic regression by L-BFGS. Its L2 strength is chosen per outer fold
by an inner validation on the training folds only (the next fold round is held out),
then it is refit on all nine training folds. HAN: launch/crossval.py with
experiments/polarity_han.py, as a user runs it (finished folds are reused; --han_seeds=N:
N seeds per fold, their mean and their ensemble, `launch/crossval.py --seeds=N`). Writes
bench/results/polarity.md (and .json). --skip_han: the baseline only; --reuse_bow: take
the baseline's rows from the last polarity.json instead of fitting them again;
--han_summary_only: report the folds --han_dir has finished, without training.
"""

import json
import os
import subprocess
import sys
import time

import common
import numpy as np

from jaxdl.data import documents
from jaxdl.data.sources import local_data_dir
from jaxdl.evaluation import bow, crossval

L2_GRID = (1e-4, 1e-3, 1e-2)
N_MAX, MIN_COUNT = 2, 2


class Split:
    """Features of a (train, test) pair (n-gram sets and labels), built once for every L2."""

    def __init__(self, train: list[tuple[set, int]], test: list[tuple[set, int]]):
        self.vocab = bow.feature_vocab([grams for grams, _ in train], MIN_COUNT)
        self.train = bow.featurize([grams for grams, _ in train], self.vocab)
        self.test = bow.featurize([grams for grams, _ in test], self.vocab)
        self.train_labels = np.array([label for _, label in train])
        self.test_labels = np.array([label for _, label in test])

    def accuracy(self, l2: float) -> float:
        params = bow.fit(self.train, self.train_labels, len(self.vocab), l2)
        probs = bow.predict(params, self.test, len(self.test_labels))
        return float(np.mean((probs > 0.5) == self.test_labels))


def bow_crossval(all_docs: list) -> list[dict]:
    grams = {d.name: (bow.ngrams(d.sentences, N_MAX), d.label) for d in all_docs}
    rows = []
    for fold in range(documents.NUM_FOLDS):
        start = time.perf_counter()
        train, test = documents.split_folds(all_docs, fold)
        inner_fold = (fold + 1) % documents.NUM_FOLDS
        inner = Split(
            [grams[d.name] for d in train if documents.polarity_fold(d.name) != inner_fold],
            [grams[d.name] for d in train if documents.polarity_fold(d.name) == inner_fold],
        )
        l2 = max(L2_GRID, key=inner.accuracy)
        accuracy = Split([grams[d.name] for d in train], [grams[d.name] for d in test]).accuracy(l2)
        rows.append({"fold": fold, "accuracy": accuracy, "l2": l2})
        rows[-1]["wall_s"] = time.perf_counter() - start
        print(f"BoW fold {fold}: {accuracy:.3f} (l2={l2:g})", flush=True)
    return rows


def main() -> None:
    han_dir = common.ROOT / "runs" / "bench" / "polarity_han"
    skip_han = reuse_bow = han_summary_only = False
    han_seeds = 1
    for arg in sys.argv[1:]:
        name, _, value = arg.partition("=")
        if name == "--han_dir":
            han_dir = common.Path(value)
        elif name == "--han_seeds" and value.isdigit() and int(value) >= 1:
            han_seeds = int(value)
        elif name == "--skip_han":
            skip_han = True
        elif name == "--reuse_bow":
            reuse_bow = True
        elif name == "--han_summary_only":
            han_summary_only = True
        else:
            sys.exit(
                f"unknown argument {arg!r}; "
                "use --han_dir=DIR, --han_seeds=N (N >= 1), --skip_han, --reuse_bow, "
                "--han_summary_only"
            )
    archive = local_data_dir() / documents.POLARITY_ARCHIVE
    all_docs = documents.read_polarity(archive)
    start = time.perf_counter()
    if reuse_bow:
        previous = json.loads((common.RESULTS / "polarity.json").read_text())
        bow_rows, bow_wall = previous["bow"], previous["bow_wall_s"]
    else:
        bow_rows = bow_crossval(all_docs)
        bow_wall = time.perf_counter() - start
    han = None
    han_wall = None
    load_before = os.getloadavg()[0]
    if han_summary_only:
        han = crossval.read_summary(han_dir)
    elif not skip_han:
        start = time.perf_counter()
        command = [
            sys.executable,
            str(common.ROOT / "launch/crossval.py"),
            f"--config={common.ROOT / 'experiments/polarity_han.py'}",
            f"--cv_dir={han_dir}",
            f"--seeds={han_seeds}",
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        han_wall = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"cross-validation failed: {' '.join(command)}\n{result.stderr[-3000:]}")
        han = crossval.read_summary(han_dir)
    bow_acc = [r["accuracy"] for r in bow_rows]
    bow_mean, bow_std = crossval.mean_std(bow_acc)
    han_by_fold = {r["fold"]: r for r in han["folds"]} if han else {}
    seeds = han.get("seeds", 1) if han else 1
    seeds_note = f" (mean of {seeds} seeds)" if seeds > 1 else ""
    shown = lambda v, fmt: "" if v is None else format(v, fmt)
    lines = [
        "# Review polarity v2.0, 10-fold cross-validation",
        "",
        common.machine_line() + f"; load average {load_before:.1f} before the HAN folds",
        "- folds: file-name prefixes cv0xx ... cv9xx; vocabularies from the nine training "
        "folds only",
        "- BoW LR: binary unigrams + bigrams (in >= 2 training documents), L2 logistic "
        "regression (L-BFGS); L2 strength chosen per fold on an inner held-out training "
        "fold",
        "- HAN: `launch/crossval.py --config=experiments/polarity_han.py` (GRU word and "
        "sentence encoders; no pretrained embeddings: the embedding starts from PPMI-SVD "
        "vectors of the training folds' text when task.embed_init='ppmi')",
        "- published: Pang & Lee 2004 87.2%; NBSVM (Wang & Manning 2012) 89.45%",
        "",
        f"| fold | BoW LR accuracy | BoW L2 | HAN accuracy{seeds_note} | "
        + ("HAN ensemble accuracy | " if seeds > 1 else "")
        + "HAN wall s | HAN eval words cut |",
        "|---|---|---|---|" + "---|" * (seeds > 1) + "---|---|",
    ]
    for row in bow_rows:
        h = han_by_fold.get(row["fold"], {})
        lines.append(
            f"| {row['fold']} | {row['accuracy']:.3f} | {row['l2']:g} | "
            f"{shown(h.get('eval/accuracy'), '.3f') or h.get('status', '')} | "
            + (f"{shown(h.get(crossval.ENSEMBLE), '.3f')} | " if seeds > 1 else "")
            + f"{shown(h.get('wall_s'), '.0f') if h.get('eval/accuracy') is not None else ''} | "
            f"{shown(h.get('truncated_share'), '.1%')} |"
        )
    lines += [
        "",
        f"- **BoW LR: {bow_mean:.2%} ± {bow_std:.2%}** (mean ± sample std over 10 folds; "
        f"{bow_wall:.0f} s wall for all folds with the inner L2 selection)",
    ]
    if han:
        done = [r for r in han["folds"] if r["eval/accuracy"] is not None]
        wall = f"{han_wall:.0f} s wall for the launcher" if han_wall else "launcher wall not timed"
        lines.append(
            f"- **HAN: {han['mean']:.2%} ± {han['std']:.2%}** over {len(done)} of "
            f"{len(han['folds'])} folds{seeds_note} ({wall}; per-fold wall in the table)"
        )
        if "ensemble_mean" in han:
            lines.append(
                f"- **HAN, ensemble of {seeds} seeds: {han['ensemble_mean']:.2%} ± "
                f"{han['ensemble_std']:.2%}** (their mean class probabilities)"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    (common.RESULTS / "polarity.md").write_text(text)
    record = {"bow": bow_rows, "bow_wall_s": bow_wall, "han": han}
    (common.RESULTS / "polarity.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
