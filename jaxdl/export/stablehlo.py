"""A run's inference function as a serialized StableHLO program and its weights
(`jax.export`), callable with jax and numpy alone, without jaxdl, flax or the run.

Written to a folder:

    model.stablehlo   jax.export's serialized program of f(weights, *inputs)
    weights.npz       its weights: w0000, w0001, ... (a list, in this order)
    export.json       what it computes: kind, inputs and output (shape, dtype; "b" is the
                      batch size where it is symbolic), class names, noise, the run

Loading, in any process with jax and numpy (the versions the program was written with,
or newer within jax.export's compatibility window):

    exported = jax.export.deserialize(open("model.stablehlo", "rb").read())
    weights = np.load("weights.npz")
    weights = [weights[name] for name in sorted(weights.files)]
    probabilities = exported.call(weights, images)          # a classifier
    images = exported.call(weights, noise, labels)          # a generator

Which functions (`inference`): a classifier's class probabilities of uint8 images (eval
mode); a generator's images in [0, 1] from noise and labels (the Generator protocol,
tasks/base.py: a GAN's generator from its EMA weights, an AE/VAE's decoder; labels are
ignored by an unconditional one). Only the state's arrays the function reads are kept.
"""

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from jaxdl.errors import UserError

PROGRAM_FILE = "model.stablehlo"
WEIGHTS_FILE = "weights.npz"
INFO_FILE = "export.json"
PLATFORMS = ("cpu", "cuda", "tpu")  # jax.export lowers for each without its device


@dataclasses.dataclass(frozen=True)
class Inference:
    """fn(state, *inputs) -> one array; inputs: (name, shape without the batch, dtype)."""

    kind: str  # "classifier" | "generator"
    fn: Callable
    inputs: tuple[tuple[str, tuple[int, ...], str], ...]
    output: str
    meta: dict


def inference(task, info: dict) -> Inference:
    """The inference function of a run's task (`info`: its data's, run.json's "data")."""
    if hasattr(task, "generate"):
        conditional = bool(task.conditional)
        return Inference(
            kind="generator",
            fn=lambda state, noise, labels: task.generate(state, noise, labels),
            inputs=(("noise", (int(task.noise_dim),), "float32"), ("labels", (), "int32")),
            output="images: float32 (b, H, W, C) in [0, 1]",
            meta={
                "noise_dim": int(task.noise_dim),
                "noise_distribution": task.noise_distribution,
                "conditional": conditional,
                "class_names": list(info.get("class_names", [])) if conditional else [],
            },
        )
    if hasattr(task, "logits") and "image_shape" in info:  # an image classifier: uint8 in
        return Inference(
            kind="classifier",
            fn=lambda state, images: jax.nn.softmax(task.logits(state, images), axis=-1),
            inputs=(("images", tuple(info["image_shape"]), "uint8"),),
            output="probabilities: float32 (b, classes)",
            meta={"class_names": list(info.get("class_names", []))},
        )
    raise UserError(
        f"a {type(task).__name__} has no inference function to export: export takes "
        "classifiers (task classify) and generators (task gan, autoencode)"
    )


def used_leaves(fn: Callable, state, specs: list) -> list[bool]:
    """For each leaf of `state` (jax.tree.leaves order): does fn(state, *specs) read it?
    (Optimizer moments, a GAN's discriminator without refinement: not kept.)"""
    leaves, treedef = jax.tree.flatten(state)
    jaxpr = jax.make_jaxpr(lambda leaves, *xs: fn(jax.tree.unflatten(treedef, leaves), *xs))(
        leaves, *specs
    ).jaxpr
    read = {id(v) for eqn in jaxpr.eqns for v in eqn.invars}
    read |= {id(v) for v in jaxpr.outvars}
    return [id(v) in read for v in jaxpr.invars[: len(leaves)]]


def _specs(inputs, batch) -> list:
    return [jax.ShapeDtypeStruct((batch, *shape), dtype) for _, shape, dtype in inputs]


def export(
    inference_: Inference, state, platforms: tuple[str, ...] = PLATFORMS
) -> tuple[jax.export.Exported, list, list[str], object]:
    """(exported program, the weights it takes, their names, its batch size: "b" when
    symbolic, else 1). The batch is symbolic unless the function needs a fixed one (a
    discriminator's minibatch standard deviation during refinement, say). The program is
    lowered for each of `platforms` (no such device needed here); it runs on any of them."""
    leaves_with_paths, treedef = jax.tree.flatten_with_path(state)
    leaves = [leaf for _, leaf in leaves_with_paths]
    fn = inference_.fn
    keep = used_leaves(fn, state, _specs(inference_.inputs, 1))
    kept = [np.asarray(leaf) for leaf, k in zip(leaves, keep, strict=True) if k]
    names = [
        jax.tree_util.keystr(p) for (p, _), k in zip(leaves_with_paths, keep, strict=True) if k
    ]

    def program(weights, *inputs):
        it = iter(weights)
        full = [next(it) if k else leaf for leaf, k in zip(leaves, keep, strict=True)]
        return fn(jax.tree.unflatten(treedef, full), *inputs)

    weight_specs = [jax.ShapeDtypeStruct(w.shape, w.dtype) for w in kept]
    lower = jax.export.export(jax.jit(program), platforms=platforms)
    (b,) = jax.export.symbolic_shape("b")
    try:
        exported, batch = lower(weight_specs, *_specs(inference_.inputs, b)), "b"
    except Exception:  # a symbolic batch refused; any other error recurs at batch 1
        exported, batch = lower(weight_specs, *_specs(inference_.inputs, 1)), 1
    return exported, kept, names, batch


def write(
    out: Path, inference_: Inference, state, run: dict, platforms: tuple[str, ...] = PLATFORMS
) -> dict:
    """Writes the program, its weights and export.json into `out`; returns export.json's
    content. `run`: where it came from (workdir, step, task)."""
    exported, weights, names, batch = export(inference_, state, platforms)
    out.mkdir(parents=True, exist_ok=True)
    (out / PROGRAM_FILE).write_bytes(exported.serialize())
    np.savez(out / WEIGHTS_FILE, **{f"w{i:04d}": w for i, w in enumerate(weights)})
    record = {
        "format": "stablehlo",
        "kind": inference_.kind,
        "inputs": [
            {"name": name, "shape": [batch, *shape], "dtype": dtype}
            for name, shape, dtype in inference_.inputs
        ],
        "output": inference_.output,
        **inference_.meta,
        "weights": {f"w{i:04d}": name for i, name in enumerate(names)},
        "platforms": list(exported.platforms),
        "jax": jax.__version__,
        "run": run,
    }
    (out / INFO_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return record
