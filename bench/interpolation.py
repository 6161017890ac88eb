"""Are latent midpoints on the data? Autoencoder vs VAE (issue: AE/VAE interpolation).

For many pairs of test images of the same class, decode (1 - t) z1 + t z2 with the AE
and with the VAE (posterior means as codes) and ask, at t = 0.5:
  - does the Fashion-MNIST CNN classifier (experiments/fashion_cnn.py) recognise the
    shared class, and how confident is it in it;
  - how far (L2 over [0, 1] pixels) is the midpoint from its nearest training image;
  - how far the midpoints as a set are from the test images: the Fréchet distance of the
    classifier's penultimate features, over the floor (train vs test images) as in
    bench/gan.py. Unlike recognition, it penalises both blur and ghosting (two
    superimposed shirts are still recognised as a shirt).
Pixel-space blending of the two images is the reference row; t = 0 (the reconstruction
of an endpoint) shows what each model does on the data itself.

    python bench/interpolation.py [--pairs_per_class=300] [--ae=DIR --vae=DIR --classifier=DIR]
                                  [--output=interpolation]

Run directories default to runs/bench/{fashion_ae,fashion_vae,fashion_cnn}; a missing one
is trained first with its experiment's defaults. Writes bench/results/<output>.md and
<output>.png (AE rows above VAE rows for the same pairs).
"""

from pathlib import Path

import common
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxdl import data
from jaxdl.evaluation.gan_judge import Judge
from jaxdl.train.run_info import load_run
from jaxdl.viz.images import image_grid

flags.DEFINE_integer("pairs_per_class", 300, "Same-class test pairs per class.")
flags.DEFINE_string("output", "interpolation", "Results name: bench/results/<output>.md, .png.")
flags.DEFINE_integer("seed", 0, "Seed of the pair choice.")
RUNS = {"ae": "fashion_ae", "vae": "fashion_vae", "classifier": "fashion_cnn"}
for _name, _experiment in RUNS.items():
    flags.DEFINE_string(_name, str(common.ROOT / "runs/bench" / _experiment), f"{_name} run.")
FLAGS = flags.FLAGS
STEPS = np.linspace(0.0, 1.0, 9)


def ensure_run(name: str) -> Path:
    workdir = Path(getattr(FLAGS, name))
    if not (workdir / "checkpoints").is_dir():
        print(f"training {RUNS[name]} into {workdir} ...", flush=True)
        common.train(f"experiments/{RUNS[name]}.py", workdir, [])
    return workdir


def same_class_pairs(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pairs = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        for _ in range(per_class):
            pairs.append(rng.choice(members, 2, replace=False))
    return np.array(pairs)


def far_partners(pairs: np.ndarray, labels: np.ndarray, images: np.ndarray) -> np.ndarray:
    """The same first images, each paired with the most different test image of its class
    (largest pixel L2): the pairs whose midpoints a latent space must fill in most."""
    flat = images.reshape(len(images), -1)
    far = []
    for first in pairs[:, 0]:
        members = np.flatnonzero(labels == labels[first])
        far.append(members[((flat[members] - flat[first]) ** 2).sum(1).argmax()])
    return np.stack([pairs[:, 0], np.array(far)], axis=1)


def spherical_midpoint(za: jax.Array, zb: jax.Array) -> jax.Array:
    """(za + zb) / 2 stretched to the endpoints' mean norm: slerp's t = 0.5 point when
    they have equal norms. A linear midpoint is shorter than both endpoints, which in
    many dimensions puts it inside the shell where a Gaussian prior's samples lie."""
    mid = (za + zb) / 2
    target = (jnp.linalg.norm(za, axis=-1) + jnp.linalg.norm(zb, axis=-1)) / 2
    return mid * (target / jnp.maximum(jnp.linalg.norm(mid, axis=-1), 1e-12))[:, None]


def main(_) -> None:
    workdirs = {name: ensure_run(name) for name in RUNS}
    test = data.load("fashion_mnist", "test")
    train = data.load("fashion_mnist", "train")
    x_test = test.arrays["image"].astype(np.float32) / 255.0
    labels = test.arrays["label"]
    random_pairs = same_class_pairs(labels, FLAGS.pairs_per_class, FLAGS.seed)
    pair_sets = {
        "random same-class pairs": random_pairs,
        "far same-class pairs": far_partners(random_pairs, labels, x_test),
    }

    judge = Judge(workdirs["classifier"])

    train_flat = jnp.asarray(train.arrays["image"].reshape(len(train.arrays["image"]), -1))
    train_flat = train_flat.astype(jnp.float32) / 255.0

    @jax.jit
    def nearest_train_distance(images, train_flat):
        """L2 distance of each image to its nearest training image."""
        flat = images.reshape(len(images), -1)
        sq = (flat**2).sum(1)[:, None] - 2 * flat @ train_flat.T + (train_flat**2).sum(1)[None]
        return jnp.sqrt(jnp.maximum(sq.min(1), 0.0))

    def row(name: str, images: np.ndarray, classes: np.ndarray) -> str:
        images = np.asarray(images)
        logits, features = judge.judge(np.round(np.clip(images, 0, 1) * 255).astype(np.uint8))
        probs = np.asarray(jax.nn.softmax(logits))
        recognised = (probs.argmax(1) == classes).mean()
        confidence = probs[np.arange(len(classes)), classes].mean()
        distance = np.asarray(nearest_train_distance(jnp.asarray(images), train_flat)).mean()
        fd_ratio = judge.frechet(features) / judge.floor
        return (
            f"| {name} | {recognised:.1%} | {confidence:.3f} | {distance:.2f} | {fd_ratio:.1f}x |"
        )

    models = {}
    for name in ("ae", "vae"):
        _, _, task, state = load_run(workdirs[name])
        encode = jax.jit(lambda x, task=task, state=state: task.encode(state.params, x)[0])
        decode = jax.jit(
            lambda z, task=task, state=state: task.to_image(task.decode(state.params, z))
        )
        models[name] = encode, decode
    lines = []
    strips = {}
    for pairs_name, pairs in pair_sets.items():
        classes = labels[pairs[:, 0]]
        a, b = x_test[pairs[:, 0]], x_test[pairs[:, 1]]
        lines += [
            f"| **{pairs_name}** | | | | |",
            row("test images a themselves (reference)", a, classes),
            row("pixel blend 0.5 a + 0.5 b (reference)", 0.5 * a + 0.5 * b, classes),
        ]
        for name, (encode, decode) in models.items():
            za, zb = encode(a), encode(b)
            lines += [
                row(f"{name.upper()} t = 0 (reconstruction of a)", decode(za), classes),
                row(f"{name.upper()} t = 0.5 (latent midpoint)", decode((za + zb) / 2), classes),
                row(
                    f"{name.upper()} t = 0.5, spherical (midpoint at the endpoints' norm)",
                    decode(spherical_midpoint(za, zb)),
                    classes,
                ),
            ]
            shown = np.arange(0, len(pairs), FLAGS.pairs_per_class)[:10]  # one pair per class
            path = [decode((1 - t) * za[shown] + t * zb[shown]) for t in STEPS]
            strips[pairs_name, name] = jnp.stack([a[shown], *path, b[shown]], axis=1)

    table = "\n".join(
        [
            "# Latent interpolation: autoencoder vs VAE (bench/interpolation.py)",
            "",
            common.machine_line(),
            f"- {len(random_pairs)} random same-class test pairs ({FLAGS.pairs_per_class} per "
            f"class, seed {FLAGS.seed}), and the same first images each paired with the most "
            "different image of its class (pixel L2): the far pairs; judged by the "
            f"classifier run {workdirs['classifier']}",
            f"- AE run {workdirs['ae']}, VAE run {workdirs['vae']}",
            f"- Fréchet distance of the classifier's penultimate features to the "
            f"{len(labels)} test images', over the floor {judge.floor:.3f} (train vs test "
            f"images); {len(random_pairs)} images per row, so even test images score above 1x",
            "",
            "| images | recognised as the shared class | mean confidence in it | "
            "mean L2 to nearest training image | Fréchet distance / floor |",
            "|---|---|---|---|---|",
            *lines,
            "",
            "Far pairs, AE (top 10 rows) and VAE (bottom 10 rows): a, decoded t = 0 ... 1, b",
            "",
            f"![far pairs: AE above VAE]({FLAGS.output}.png)",
            "",
        ]
    )
    print(table)
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    (common.RESULTS / f"{FLAGS.output}.md").write_text(table)
    from PIL import Image

    far = "far same-class pairs"
    grid = np.asarray(image_grid(jnp.concatenate([strips[far, "ae"], strips[far, "vae"]])))
    height, width = grid.shape
    Image.fromarray(grid).resize((2 * width, 2 * height), Image.NEAREST).save(
        common.RESULTS / f"{FLAGS.output}.png"
    )


if __name__ == "__main__":
    app.run(main)
