"""Judge a GAN run with a Fashion-MNIST classifier run:

    python launch/gan_eval.py --workdir=runs/fashion_cgan --judge=runs/bench/fashion_cnn \
        [--num_samples=10000] [--refine_steps=0] [--reject=none|drs|judge]
        [--all_checkpoints | --step=STEP|best]

Prints, per checkpoint (the newest, or every kept one), the class-correct rate of
conditional samples against the classifier's real test accuracy, the Fréchet distance of
the classifier's penultimate features (samples vs test images) against the train-vs-test
floor, and the entropy of the predicted classes (jaxdl/evaluation/gan_judge.py). With
--all_checkpoints also writes workdir/gan_eval.jsonl.
"""

import json
from pathlib import Path

from _tool import define_step_flag, tool_main
from absl import app, flags

flags.DEFINE_string("workdir", None, "Run directory of a GAN run.")
flags.DEFINE_string("judge", None, "Run directory of a classifier run on the same data.")
flags.DEFINE_integer("num_samples", 10_000, "Samples to judge (and real images per set).")
flags.DEFINE_integer("refine_steps", 0, "Discriminator-guided noise steps per sample.")
flags.DEFINE_integer("seed", 0, "Noise seed.")
flags.DEFINE_enum(
    "reject",
    "none",
    ["none", "drs", "judge"],
    "Rejection of samples: drs (the discriminator's density ratio, Azadi et al. 2019) or "
    "judge (kept when the classifier recognises the requested class).",
)
flags.DEFINE_float(
    "drs_percentile",
    None,
    "drs: gamma as this percentile of F (lower: more accepted); default exact.",
)
flags.DEFINE_bool("all_checkpoints", False, "Judge every kept checkpoint, not the newest.")
define_step_flag()
flags.mark_flags_as_required(["workdir", "judge"])
FLAGS = flags.FLAGS


def format_row(r: dict) -> str:
    correct = (
        f"{r['class_correct']:.1%} ({r['class_correct_ratio']:.3f}x real)"
        if "class_correct" in r
        else "-"
    )
    return (
        f"| {r['step']} | {correct} | {r['fd']:.2f} | {r['floor']:.3f} | "
        f"{r['fd_ratio']:.1f}x | {r['class_entropy']:.3f} | {r['d_score']:.3f} | "
        f"{r['acceptance']:.1%} |"
    )


HEADER = (
    "| step | class-correct | Fréchet distance | floor (train vs test) | FD / floor | "
    "class entropy (bits) | D logit | accepted |\n|---|---|---|---|---|---|---|---|"
)


@tool_main
def main():
    from jaxdl.errors import check
    from jaxdl.evaluation.gan_judge import Judge, evaluate_run
    from jaxdl.train import checkpoint

    check(FLAGS.num_samples > 0, f"--num_samples={FLAGS.num_samples} must be positive")
    check(FLAGS.refine_steps >= 0, f"--refine_steps={FLAGS.refine_steps} must be >= 0")
    judge = Judge(FLAGS.judge, FLAGS.num_samples)
    check(not (FLAGS.all_checkpoints and FLAGS.step), "give --step or --all_checkpoints, not both")
    steps = [FLAGS.step]
    if FLAGS.all_checkpoints:
        ckpts = checkpoint.Checkpoints(Path(FLAGS.workdir) / "checkpoints", read_only=True)
        steps = ckpts.all_steps()
        ckpts.close()
    print(HEADER, flush=True)
    results = []
    for step in steps:
        result = evaluate_run(
            FLAGS.workdir,
            judge,
            step,
            num_samples=FLAGS.num_samples,
            seed=FLAGS.seed,
            refine_steps=FLAGS.refine_steps,
            reject=FLAGS.reject,
            drs_percentile=FLAGS.drs_percentile,
        )
        results.append(result)
        print(format_row(result), flush=True)
    print(f"classifier test accuracy on real images: {judge.real_accuracy:.2%}")
    if FLAGS.all_checkpoints:
        lines = "".join(json.dumps(r) + "\n" for r in results)
        (Path(FLAGS.workdir) / "gan_eval.jsonl").write_text(lines)
    return 0


if __name__ == "__main__":
    app.run(main)
