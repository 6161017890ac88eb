"""Export a trained run's inference function, to use without jaxdl:

    python launch/export.py --workdir=runs/fashion_cnn --out=export/cnn [--step=N]
        StableHLO (jax.export) and its weights: a classifier's class probabilities of uint8
        images, a generator's images from noise and labels (a GAN's, an AE/VAE's decoder);
        callable with jax and numpy alone (jaxdl/export/stablehlo.py says how)
    python launch/export.py --workdir=runs/fashion_cgan --out=export/cgan --format=onnx
        a GAN's generator as ONNX (generator.onnx), for onnxruntime anywhere
    python launch/export.py --workdir=runs/fashion_cgan --out=export/page --page
        the generator page as static files: the ONNX model and onnxruntime-web run it in
        the browser, no server (open index.html; jaxdl/export/page.py)

Loads the run's newest checkpoint (or --step). StableHLO is lowered for --platforms
(default cpu,cuda,tpu: no such device is needed to export, and the program runs on each).
Writes export.json beside the model (what it computes, its inputs, the run). A bad flag
or run is one line, exit 1.
"""

from pathlib import Path

from _tool import define_step_flag, tool_main
from absl import app, flags

flags.DEFINE_string("workdir", None, "Run directory of a trained run.")
flags.DEFINE_string("out", None, "Folder to write (created; files in it are replaced).")
define_step_flag()
flags.DEFINE_enum("format", "stablehlo", ["stablehlo", "onnx"], "What to write.")
flags.DEFINE_list(
    "platforms", ["cpu", "cuda", "tpu"], "StableHLO: the platforms the program runs on."
)
flags.DEFINE_bool("page", False, "Write the static generator page (ONNX inside).")
flags.mark_flags_as_required(["workdir", "out"])
FLAGS = flags.FLAGS


@tool_main
def main():
    from jaxdl.errors import check
    from jaxdl.export import onnx_gan, page, stablehlo
    from jaxdl.train.run_info import load_run

    out = Path(FLAGS.out)
    check(not out.is_file(), f"--out={FLAGS.out} is a file, not a folder")
    check(
        not (FLAGS.page and FLAGS["format"].present and FLAGS.format != "onnx"),
        "--page writes ONNX: leave out --format or give --format=onnx",
    )
    platforms = tuple(FLAGS.platforms)
    check(
        platforms and set(platforms) <= {"cpu", "cuda", "rocm", "tpu"},
        f"--platforms={','.join(platforms)}: give some of cpu, cuda, rocm, tpu",
    )
    if FLAGS.page:  # before the run loads: the runtime is a build step's
        runtime = page.find_runtime()
    config, info, task, state = load_run(FLAGS.workdir, FLAGS.step)
    workdir = Path(FLAGS.workdir).resolve()
    run = {"workdir": str(workdir), "step": int(state.step), "task": config.task.name}
    title = f"{workdir.name}: {config.task.name}, step {int(state.step)}"
    if FLAGS.page:
        record = page.write(out, task, state, info, title, run, runtime)
        written = f"the generator page ({record['size_bytes'] / 2**20:.1f} MiB)"
    elif FLAGS.format == "onnx":
        onnx_gan.write(out, task, state, info, run)
        written = onnx_gan.MODEL_FILE
    else:
        inference = stablehlo.inference(task, info)
        record = stablehlo.write(out, inference, state, run, platforms)
        written = f"the {record['kind']}'s StableHLO, batch {record['inputs'][0]['shape'][0]}"
    print(f"exported {title}: {written} in {out}", flush=True)
    return 0


if __name__ == "__main__":
    app.run(main)
