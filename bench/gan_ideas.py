"""The GAN's two remaining ideas, measured on a trained class-conditional GAN run.

1. Rejection: the run's 10,000 samples judged as bench/gan.py judges them (class-correct
   rate against the classifier's real accuracy, Fréchet distance / floor), plain, after
   discriminator rejection sampling (exact: gamma 0; and gamma at the 80th percentile of
   F), and after rejection by the classifier itself (kept when recognised).
2. Labelled data from the generator: the experiments/fashion_cnn.py recipe (its 9,360
   steps of batch 128, no time limit) trained on 60,000 generated (image, requested
   label) pairs and tested on the real test set (the classification accuracy score of
   Ravuri & Vinyals 2019), and trained on k real images per class with and without the
   60,000 generated ones, k in {10, 100, 1000} (batch 100 when there are only 100).

    python bench/gan_ideas.py [--gan=runs/bench/gan/main] [--judge=runs/bench/fashion_cnn]

Writes the section "Rejection sampling and generated training data" of
bench/results/gan.md (and gan_ideas.json).
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import RESULTS, ROOT, machine_line, train

STEPS = 9360  # experiments/fashion_cnn.py: 20 epochs of batch 128 over 60,000 images
MARK = "<!-- gan_ideas: written by bench/gan_ideas.py -->"


def rejection_rows(gan: str, judge_dir: str) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    from jaxdl.evaluation.gan_judge import Judge, evaluate_run

    judge = Judge(judge_dir)
    settings = [
        ("plain samples", dict(reject="none")),
        ("DRS, exact (gamma 0)", dict(reject="drs")),
        ("DRS, gamma at the 80th percentile of F", dict(reject="drs", drs_percentile=80.0)),
        ("rejection by the classifier", dict(reject="judge")),
    ]
    rows = []
    for name, kwargs in settings:
        result = evaluate_run(gan, judge, **kwargs)
        rows.append({"setting": name, **result})
        print(name, {k: result[k] for k in ("class_correct_ratio", "fd_ratio", "acceptance")})
    return rows


def make_data(gan: str, out: Path, num_samples: int, real_per_class: int) -> None:
    command = [
        sys.executable,
        str(ROOT / "launch/gan_data.py"),
        f"--workdir={gan}",
        f"--out={out}",
        f"--num_samples={num_samples}",
        f"--real_per_class={real_per_class}",
    ]
    subprocess.run(command, check=True, capture_output=True, text=True)


def classifier_accuracy(data_dir: Path, workdir: Path, train_images: int) -> float:
    overrides = [
        f"--config.data.data_dir={data_dir}",
        "--config.data.source=local",
        "--config.train.num_epochs=0",
        f"--config.train.num_steps={STEPS}",
        "--config.train.max_seconds=0",
        f"--config.train.eval_every={STEPS}",
        f"--config.train.checkpoint_every={STEPS}",
        "--config.train.plot=False",
    ]
    if train_images < 128:
        overrides.append(f"--config.data.batch_size={train_images}")
    train("experiments/fashion_cnn.py", workdir, overrides)
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return rows[-1]["eval/accuracy"]


def data_rows(gan: str) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = [("generated only (CAS)", 60_000, 0)]
        for k in (10, 100, 1000):
            cases += [(f"{k} real per class", 0, k), (f"{k} real per class + generated", 60_000, k)]
        for name, generated, k in cases:
            data_dir = tmp / name.replace(" ", "_")
            make_data(gan, data_dir, generated, k)
            accuracy = classifier_accuracy(data_dir, tmp / f"run_{len(rows)}", generated + 10 * k)
            rows.append(
                {
                    "training data": name,
                    "generated": generated,
                    "real": 10 * k,
                    "test accuracy": accuracy,
                }
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gan", default="runs/bench/gan/main")
    parser.add_argument("--judge", default="runs/bench/fashion_cnn")
    args = parser.parse_args()
    rejection = rejection_rows(args.gan, args.judge)
    trained = data_rows(args.gan)
    real = rejection[0]["real_accuracy"]
    lines = [
        MARK,
        "## Rejection sampling and generated training data",
        "",
        machine_line(),
        f"- `python bench/gan_ideas.py --gan={args.gan} --judge={args.judge}` (the GAN run: "
        f"step {rejection[0]['step']}; the judge's real test accuracy {real:.2%})",
        "",
        "| 10,000 samples | accepted | class-correct (x real) | FD / floor | class entropy |",
        "|---|---|---|---|---|",
    ]
    for r in rejection:
        lines.append(
            f"| {r['setting']} | {r['acceptance']:.1%} | {r['class_correct']:.1%} "
            f"({r['class_correct_ratio']:.3f}x) | {r['fd_ratio']:.1f}x | "
            f"{r['class_entropy']:.3f} |"
        )
    lines += [
        "",
        "| training data (tested on the real test set) | images | test accuracy |",
        "|---|---|---|",
        f"| 60,000 real (experiments/fashion_cnn.py) | 60,000 | {real:.2%} (the judge run) |",
    ]
    for r in trained:
        lines.append(
            f"| {r['training data']} | {r['generated'] + r['real']:,} | {r['test accuracy']:.2%} |"
        )
    section = "\n".join(lines) + "\n"
    print(section)
    results = RESULTS / "gan.md"
    text = results.read_text()
    text = text.split(MARK)[0].rstrip() + "\n\n" + section
    results.write_text(text)
    (RESULTS / "gan_ideas.json").write_text(
        json.dumps({"rejection": rejection, "training": trained}, indent=1, default=str) + "\n"
    )


if __name__ == "__main__":
    main()
