"""Does the HAN know something the bag of words does not? Average, per fold, the HAN
ensemble's class probabilities with the BoW logistic regression's and score the mix.

    python bench/polarity_mix.py [--han_dir=runs/bench/polarity_han_seeds]

Needs a finished `launch/crossval.py --seeds=N` directory (bench/polarity.py
--han_seeds=N) and bench/results/polarity.json for each fold's chosen BoW L2 strength
(the BoW model is refit with it on the nine training folds). The HAN weight w runs over
a fixed grid; choosing w by these test folds would be selection on the test set, so the
table shows every w, and w = 0.5 is the one mix fixed in advance. Writes
bench/results/polarity_mix.md.
"""

import json
import sys

import common
import numpy as np
from polarity import N_MAX, Split

from jaxdl.data.inputs import read_documents
from jaxdl.evaluation import bow, crossval
from jaxdl.sweeps import runner as sweep
from jaxdl.train.run_info import load_run

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # of the HAN; 1 - w of the BoW LR


def fold_accuracies(han_dir, l2_by_fold: dict[int, float]) -> dict[int, list[float]]:
    """fold -> accuracy of w * HAN + (1 - w) * BoW for each w in WEIGHTS."""
    manifest = json.loads((han_dir / sweep.MANIFEST).read_text())
    by_fold: dict[int, list] = {}
    for trial in manifest["trials"]:
        by_fold.setdefault(trial["overrides"]["data.fold"], []).append(han_dir / trial["name"])
    accuracies = {}
    for fold, workdirs in sorted(by_fold.items()):
        han_probs, labels = crossval.ensemble_probabilities(workdirs)
        config = load_run(workdirs[0])[0]
        train, test, _, _ = read_documents(config.data)
        # The eval set is the test fold encoded in order, so its rows are `test`'s.
        assert [d.label for d in test] == list(labels), "eval rows are not the test fold's"
        split = Split(
            [(bow.ngrams(d.sentences, N_MAX), d.label) for d in train],
            [(bow.ngrams(d.sentences, N_MAX), d.label) for d in test],
        )
        params = bow.fit(split.train, split.train_labels, len(split.vocab), l2_by_fold[fold])
        bow_positive = bow.predict(params, split.test, len(test))
        accuracies[fold] = [
            float(((w * han_probs[:, 1] + (1 - w) * bow_positive > 0.5) == labels).mean())
            for w in WEIGHTS
        ]
        print(f"fold {fold}: " + " ".join(f"{a:.3f}" for a in accuracies[fold]), flush=True)
    return accuracies


def main() -> None:
    han_dir = common.ROOT / "runs" / "bench" / "polarity_han_seeds"
    for arg in sys.argv[1:]:
        name, _, value = arg.partition("=")
        if name != "--han_dir":
            sys.exit(f"unknown argument {arg!r}; use --han_dir=DIR")
        han_dir = common.Path(value)
    bow_rows = json.loads((common.RESULTS / "polarity.json").read_text())["bow"]
    accuracies = fold_accuracies(han_dir, {r["fold"]: r["l2"] for r in bow_rows})
    columns = np.array(list(accuracies.values()))
    lines = [
        "# Review polarity: HAN ensemble and BoW LR probabilities averaged (bench/polarity_mix.py)",
        "",
        common.machine_line(),
        f"- HAN: the seeds' ensemble of each fold in {han_dir}; BoW LR refit per fold with "
        "the L2 strength bench/polarity.py chose on an inner fold",
        "- w: the HAN's weight in the mean of P(positive); w = 0 is the BoW LR alone, w = 1 "
        "the HAN ensemble alone",
        "",
        "| fold | " + " | ".join(f"w = {w:g}" for w in WEIGHTS) + " |",
        "|---|" + "---|" * len(WEIGHTS),
        *(
            f"| {fold} | " + " | ".join(f"{a:.3f}" for a in row) + " |"
            for fold, row in accuracies.items()
        ),
        "| **mean ± std** | "
        + " | ".join(
            "{:.2%} ± {:.2%}".format(*crossval.mean_std(list(columns[:, i])))
            for i in range(len(WEIGHTS))
        )
        + " |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    (common.RESULTS / "polarity_mix.md").write_text(text)


if __name__ == "__main__":
    main()
