"""GANs on Fashion-MNIST judged by an independent classifier (issue 7).

    python bench/gan.py [--minutes=30] [--ablation_minutes=5] [--judge=DIR]

1. The judge: the classifier run --judge (default runs/bench/fashion_cnn; trained with
   experiments/fashion_cnn.py first if missing).
2. The main run: experiments/fashion_cgan.py for --minutes of wall time (start-up and
   evals included), every kept checkpoint judged: class-correct rate vs the classifier's
   real accuracy, Fréchet distance / train-vs-test floor, over steps (gan.png).
3. Ablations at --ablation_steps adversarial steps, against the main run's checkpoint at
   that step: autoencoder pre-training of the generator (--pretrain_steps first); the
   unconditional GAN (class entropy); discriminator-guided refinement (--refine_steps
   noise steps at sampling time) on the main run's last checkpoint, --refine_samples.

Run directories live under runs/bench/gan/; an existing one is judged as it is (delete it
to retrain); `--train_only=NAME` trains one run and stops (to train runs side by side).
Writes bench/results/gan.md, gan.json, gan.png (FD / floor and class-correct over
time), gan_train_metrics.png (the main run's losses) and gan_samples.png (its last grid).
"""

import json
import shutil
from pathlib import Path

import common
from absl import app, flags

flags.DEFINE_float("minutes", 30, "Wall minutes of the main cGAN run.")
flags.DEFINE_integer("ablation_steps", 500, "Adversarial steps of each ablation run.")
flags.DEFINE_integer("pretrain_steps", 200, "Autoencoder steps of the pre-training ablation.")
flags.DEFINE_integer("refine_steps", 5, "Noise steps of the refinement ablation.")
flags.DEFINE_integer("num_samples", 10_000, "Samples judged per checkpoint.")
flags.DEFINE_integer("refine_samples", 2000, "Samples of the refinement ablation.")
flags.DEFINE_string("judge", str(common.ROOT / "runs/bench/fashion_cnn"), "Classifier run.")
flags.DEFINE_string("runs_dir", str(common.ROOT / "runs/bench/gan"), "Where the GAN runs go.")
flags.DEFINE_string("train_only", None, "Train this run (if missing) and stop.")
FLAGS = flags.FLAGS


def run_specs() -> dict:
    """name -> (experiment, overrides, description)."""
    main_budget = [f"--config.train.max_seconds={FLAGS.minutes * 60}"]
    steps = lambda n: ["--config.train.max_seconds=0", f"--config.train.num_steps={n}"]
    cgan, gan = "experiments/fashion_cgan.py", "experiments/fashion_gan.py"
    return {
        "main": (cgan, main_budget, f"cGAN, {FLAGS.minutes:g} min"),
        "ae_pretrain": (
            cgan,
            [
                *steps(FLAGS.pretrain_steps + FLAGS.ablation_steps),
                f"--config.task.pretrain_steps={FLAGS.pretrain_steps}",
            ],
            f"cGAN, {FLAGS.pretrain_steps} autoencoder steps, then {FLAGS.ablation_steps} "
            "adversarial",
        ),
        "unconditional": (
            gan,
            steps(FLAGS.ablation_steps),
            f"GAN (unconditional), {FLAGS.ablation_steps} steps",
        ),
    }


def ensure_run(name: str) -> Path:
    experiment, overrides, _ = run_specs()[name]
    workdir = Path(FLAGS.runs_dir) / name
    if not (workdir / "checkpoints").is_dir():
        print(f"training {name} into {workdir} ...", flush=True)
        common.train(experiment, workdir, overrides)
    return workdir


def elapsed_at(workdir: Path, step: int) -> float:
    from jaxdl.train import read_metrics

    rows = [r for r in read_metrics(workdir) if r["step"] <= step]
    return rows[-1]["elapsed_s"] if rows else float("nan")


def main(_) -> None:
    if FLAGS.train_only:
        ensure_run(FLAGS.train_only)
        return
    judge_dir = Path(FLAGS.judge)
    if not (judge_dir / "checkpoints").is_dir():
        print(f"training the judge into {judge_dir} ...", flush=True)
        common.train("experiments/fashion_cnn.py", judge_dir, [])
    workdirs = {name: ensure_run(name) for name in run_specs()}

    from jaxdl.evaluation.gan_judge import Judge, evaluate_run
    from jaxdl.train import checkpoint

    judge = Judge(judge_dir, FLAGS.num_samples)
    evaluate = lambda name, step=None: evaluate_run(
        workdirs[name], judge, step, num_samples=FLAGS.num_samples
    )
    ckpts = checkpoint.Checkpoints(workdirs["main"] / "checkpoints", read_only=True)
    steps = ckpts.all_steps()
    ckpts.close()
    curve = []
    for step in steps:
        result = evaluate("main", step)
        result["elapsed_s"] = elapsed_at(workdirs["main"], step)
        curve.append(result)
        print(json.dumps(result), flush=True)

    # The main run's checkpoint after as many adversarial steps is the ablations' baseline.
    baseline = next(r for r in curve if r["step"] == FLAGS.ablation_steps)
    specs = run_specs()
    ablations = [(f"cGAN, {FLAGS.ablation_steps} steps (main run's checkpoint)", baseline)]
    ablations += [(specs[name][2], evaluate(name)) for name in ("unconditional", "ae_pretrain")]
    # Refinement costs refine_steps gradients through G and D per sample: fewer samples,
    # compared with as many plain ones (the FD's small-sample bias differs from 10k's).
    n = FLAGS.refine_samples
    for refine in (0, FLAGS.refine_steps):
        result = evaluate_run(workdirs["main"], judge, num_samples=n, refine_steps=refine)
        ablations.append((f"{specs['main'][2]}, {n} samples, {refine} refinement steps", result))

    def row(label: str, r: dict) -> str:
        correct = (
            f"{r['class_correct']:.1%} | {r['class_correct_ratio']:.3f}"
            if "class_correct" in r
            else "- | -"
        )
        return (
            f"| {label} | {r['step']} | {correct} | {r['fd']:.2f} | {r['fd_ratio']:.1f}x | "
            f"{r['class_entropy']:.3f} | {r['d_score']:.2f} |"
        )

    header = [
        "| run | steps | class-correct | x real accuracy | Fréchet distance | FD / floor | "
        "class entropy (bits) | D logit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    final = curve[-1]
    lines = [
        "# GANs on Fashion-MNIST, judged by a classifier (bench/gan.py)",
        "",
        common.machine_line(),
        f"- judge: {judge_dir}, test accuracy on real images {judge.real_accuracy:.2%}; "
        f"features: its penultimate layer; {FLAGS.num_samples} samples per row (conditional: "
        "equally many per class) vs as many test images",
        f"- floor: Fréchet distance of {FLAGS.num_samples} train vs test images = "
        f"{judge.floor:.4f}",
        f"- main run: experiments/fashion_cgan.py, {FLAGS.minutes:g} min wall "
        f"({final['step']} steps); {workdirs['main']}",
        "",
        "## Main run over time",
        "",
        "| elapsed (min) | " + header[0][2:],
        "|---" + header[1],
        *[f"| {r['elapsed_s'] / 60:.1f} " + row("main", r) for r in curve],
        "",
        "## Ablations",
        "",
        *header,
        *[row(label, r) for label, r in ablations],
        "",
        "![FD / floor and class-correct over time](gan.png)",
        "",
        "Training losses of the main run: [gan_train_metrics.png](gan_train_metrics.png); "
        "its last samples (EMA generator, one row per class):",
        "",
        "![samples](gan_samples.png)",
        "",
    ]
    table = "\n".join(lines)
    print(table)
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    (common.RESULTS / "gan.md").write_text(table)
    record = {"curve": curve, "ablations": [{"run": label, **r} for label, r in ablations]}
    (common.RESULTS / "gan.json").write_text(json.dumps(record, indent=1) + "\n")
    plot(curve, common.RESULTS / "gan.png")
    # The main run's training curves (the trainer's metrics.png) and its last sample grid.
    shutil.copy(workdirs["main"] / "metrics.png", common.RESULTS / "gan_train_metrics.png")
    grids = sorted((workdirs["main"] / "images").glob("samples_*.png"))
    shutil.copy(grids[-1], common.RESULTS / "gan_samples.png")


def plot(curve: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["elapsed_s"] / 60 for r in curve]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    top.plot(minutes, [r["fd_ratio"] for r in curve], marker="o")
    for target, style in ((15, "--"), (5, ":")):
        top.axhline(target, color="gray", linestyle=style, linewidth=1)
    top.set_yscale("log")
    top.set_ylabel("Fréchet distance / floor")
    bottom.plot(minutes, [r.get("class_correct_ratio", float("nan")) for r in curve], marker="o")
    bottom.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    bottom.set_ylabel("class-correct / real acc.")
    bottom.set_xlabel("wall minutes (main cGAN run)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    app.run(main)
