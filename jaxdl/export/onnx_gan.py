"""A GAN's generator (models/gan.py `Generator`, its EMA weights) as an ONNX graph, built
layer by layer with the `onnx` package (no exporter: the generator is five kinds of layer):

    noise (N, noise_dim) float32 [, labels (N,) int64]
      -> [Gather(label embedding), Concat]              the conditional generator's input
      -> Gemm, Relu, Reshape (N, h/4, w/4, 2 width), Transpose to NCHW
      -> 2 x (Conv 3x3, DepthToSpace 2 (DCR: models/autoencoder.depth_to_space's order), Relu)
      -> Conv 3x3, Tanh, (x + 1) / 2, Transpose to NHWC
    images (N, h, w, c) float32 in [0, 1]: what `GANTask.generate` returns

The batch is symbolic ("batch"). Discriminator-guided refinement (`task.refine_steps`) and
bfloat16 compute are refused: the graph would compute something else. A generator whose
weights are not the layers above is refused too, naming what differs.
"""

import json
from pathlib import Path

import numpy as np

from jaxdl.errors import UserError, check

MODEL_FILE = "generator.onnx"
INFO_FILE = "export.json"
OPSET = 17  # onnxruntime and onnxruntime-web run it; DepthToSpace DCR since 11


def check_exportable(task) -> None:
    """UserError unless `task` is a GAN whose generator the graph computes exactly."""
    from jaxdl.models.precision import Mixed

    check(
        hasattr(task, "generator") and hasattr(task, "generate"),
        f"ONNX export takes a GAN's generator (task gan), not {type(task).__name__}'s model",
    )
    check(
        not isinstance(task.generator, Mixed),
        "the run computes in bfloat16 (train.compute_dtype): its ONNX graph, in float32, "
        "would draw other pictures",
    )
    check(
        not task.refine_steps,
        f"task.refine_steps={task.refine_steps}: refinement steers the noise with the "
        "discriminator's gradient, which the ONNX graph has not",
    )


def _expected_layers(conditional: bool) -> set[str]:
    layers = {"Dense_0", "Conv_0", "Conv_1", "Conv_2"}
    return layers | {"Embed_0"} if conditional else layers


def build(task, params) -> "onnx.ModelProto":  # noqa: F821
    """The ONNX model of `task.generator` with `params` (its EMA weights)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    check_exportable(task)
    params = {
        layer: {k: np.asarray(v, np.float32) for k, v in p.items()} for layer, p in params.items()
    }
    expected = _expected_layers(task.conditional)
    if set(params) != expected:
        raise UserError(
            f"the generator's layers {sorted(params)} are not the ones ONNX export builds "
            f"({sorted(expected)}): models/gan.py changed; update jaxdl/export/onnx_gan.py"
        )
    h, w, c = task.generator.image_shape
    dense_out = params["Dense_0"]["kernel"].shape[1]
    grid = (h // 4, w // 4, dense_out // ((h // 4) * (w // 4)))

    nodes, weights = [], []

    def const(name: str, value: np.ndarray) -> str:
        weights.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    inputs = [helper.make_tensor_value_info("noise", TensorProto.FLOAT, ["batch", task.noise_dim])]
    x = "noise"
    if task.conditional:
        inputs.append(helper.make_tensor_value_info("labels", TensorProto.INT64, ["batch"]))
        table = const("embedding", params["Embed_0"]["embedding"])
        embedded = node("Gather", [table, "labels"], "embedded", axis=0)
        x = node("Concat", [x, embedded], "noise_and_label", axis=1)
    dense = params["Dense_0"]
    kernel, bias = const("dense_kernel", dense["kernel"]), const("dense_bias", dense["bias"])
    x = node("Gemm", [x, kernel, bias], "dense")
    x = node("Relu", [x], "dense_relu")
    x = node("Reshape", [x, const("grid_shape", np.array([-1, *grid], np.int64))], "grid")
    x = node("Transpose", [x], "grid_nchw", perm=[0, 3, 1, 2])

    def conv(x: str, layer: str) -> str:
        kernel = params[layer]["kernel"]  # HWIO -> OIHW
        k = kernel.shape[0]
        oihw = const(f"{layer}_kernel", kernel.transpose(3, 2, 0, 1))
        bias = const(f"{layer}_bias", params[layer]["bias"])
        return node("Conv", [x, oihw, bias], layer, pads=[k // 2] * 4, kernel_shape=[k, k])

    for stage in ("Conv_0", "Conv_1"):
        x = node("DepthToSpace", [conv(x, stage)], f"{stage}_up", blocksize=2, mode="DCR")
        x = node("Relu", [x], f"{stage}_relu")
    x = node("Tanh", [conv(x, "Conv_2")], "tanh")
    x = node("Add", [x, const("one", np.array(1.0, np.float32))], "plus_one")
    x = node("Mul", [x, const("half", np.array(0.5, np.float32))], "unit")
    node("Transpose", [x], "images", perm=[0, 2, 3, 1])
    output = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", h, w, c])
    graph = helper.make_graph(nodes, "jaxdl_generator", inputs, [output], initializer=weights)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="jaxdl"
    )
    model.ir_version = 8  # onnxruntime-web reads it
    onnx.checker.check_model(model, full_check=True)
    return model


def info_record(task, info: dict, run: dict) -> dict:
    h, w, c = task.generator.image_shape
    return {
        "format": "onnx",
        "kind": "generator",
        "model": MODEL_FILE,
        "inputs": [{"name": "noise", "shape": ["batch", int(task.noise_dim)], "dtype": "float32"}]
        + ([{"name": "labels", "shape": ["batch"], "dtype": "int64"}] if task.conditional else []),
        "output": f"images: float32 (batch, {h}, {w}, {c}) in [0, 1]",
        "image_shape": [h, w, c],
        "noise_dim": int(task.noise_dim),
        "noise_distribution": task.noise_distribution,
        "conditional": bool(task.conditional),
        "class_names": list(info.get("class_names", [])) if task.conditional else [],
        "opset": OPSET,
        "run": run,
    }


def write(out: Path, task, state, info: dict, run: dict) -> dict:
    """Writes generator.onnx and export.json into `out`; returns export.json's content."""
    check_exportable(task)
    model = build(task, state.ema_params)
    record = info_record(task, info, run)
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_FILE).write_bytes(model.SerializeToString())
    (out / INFO_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return record
