"""The generator page as static files: what launch/serve.py's page does (class, new noise,
the noise grid, the walk between two seeds, seeds in the address), with the GAN's
generator run in the browser by onnxruntime-web instead of by a server.

    index.html, page.js       the page
    noise.js                  seed -> noise, as jaxdl/serve's draw_noise (numpy's PCG64)
    model.js                  the ONNX generator (base64) and what the page shows of it
    generator.onnx            the same model, for other tools; export.json describes it
    vendor/                   onnxruntime-web (VERSION, LICENSE): ort.wasm.min.js and
                              ort-wasm.js (its wasm module and glue, embedded as text)

Everything is loaded by classic <script> tags and handed to onnxruntime-web as bytes
(`env.wasm.wasmBinary`, the glue module as a blob: URL, single-threaded), so the page opens
from file:// as well as from any static host: browsers refuse fetch() and module imports
of file:// URLs, not scripts. The runtime comes from npm (`make web-runtime`).
"""

import base64
import json
import os
import shutil
from pathlib import Path

from jaxdl.errors import UserError, check
from jaxdl.export import onnx_gan

RUNTIME_VERSION = "1.31.1"  # the Makefile's ORT_WEB_VERSION
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
RUNTIME_ENV = "JAXDL_ORT_WEB"
STATIC = Path(__file__).parent / "static"
PAGE_FILES = ("index.html", "page.js", "noise.js")


def default_runtime() -> Path:
    return Path(__file__).resolve().parents[2] / "build" / f"onnxruntime-web-{RUNTIME_VERSION}"


def find_runtime() -> Path:
    """The folder with onnxruntime-web's files ($JAXDL_ORT_WEB, else the Makefile's
    build/onnxruntime-web-VERSION), else UserError saying how to get it."""
    folder = Path(os.environ.get(RUNTIME_ENV) or default_runtime())
    missing = [name for name in RUNTIME_FILES if not (folder / name).is_file()]
    if missing:
        raise UserError(
            f"no onnxruntime-web {RUNTIME_VERSION} in {folder} ({', '.join(missing)} missing): "
            f"run `make web-runtime` (fetches it from npm) or set ${RUNTIME_ENV}"
        )
    version = json.loads((folder / "package.json").read_text()).get("version")
    check(
        version == RUNTIME_VERSION,
        f"{folder} holds onnxruntime-web {version}; the page is tested with {RUNTIME_VERSION}",
    )
    return folder


def _script(variable: str, value) -> str:
    return f"// Written by launch/export.py --page.\nwindow.{variable} = {json.dumps(value)};\n"


def write(out: Path, task, state, info: dict, title: str, run: dict, runtime: Path) -> dict:
    """Writes the page into `out`; returns export.json's content with the folder's size."""
    onnx_gan.check_exportable(task)
    check(
        task.noise_distribution == "uniform",
        f"the page draws uniform noise as the served page does; this generator's is "
        f"{task.noise_distribution} (task.noise_distribution)",
    )
    model = onnx_gan.build(task, state.ema_params).SerializeToString()
    record = onnx_gan.info_record(task, info, run)
    page_info = {
        key: record[key]
        for key in ("noise_dim", "noise_distribution", "conditional", "class_names", "image_shape")
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "vendor").mkdir(exist_ok=True)
    for name in PAGE_FILES:
        shutil.copyfile(STATIC / name, out / name)
    (out / onnx_gan.MODEL_FILE).write_bytes(model)
    model_js = {"info": {"title": title, **page_info}, "onnx": base64.b64encode(model).decode()}
    (out / "model.js").write_text(_script("JAXDL_MODEL", model_js))
    shutil.copyfile(runtime / "ort.wasm.min.js", out / "vendor" / "ort.wasm.min.js")
    wasm = {
        "glue": (runtime / "ort-wasm-simd-threaded.mjs").read_text(),
        "wasm": base64.b64encode((runtime / "ort-wasm-simd-threaded.wasm").read_bytes()).decode(),
    }
    (out / "vendor" / "ort-wasm.js").write_text(_script("JAXDL_ORT_WASM", wasm))
    shutil.copyfile(STATIC / "vendor" / "onnxruntime-web.LICENSE", out / "vendor" / "LICENSE")
    (out / "vendor" / "VERSION").write_text(
        f"onnxruntime-web {RUNTIME_VERSION} (npm, MIT licence: LICENSE here; third-party "
        "notices: https://github.com/microsoft/onnxruntime/blob/main/ThirdPartyNotices.txt)\n"
        "ort.wasm.min.js as published; ort-wasm.js embeds ort-wasm-simd-threaded.mjs and "
        ".wasm as published (text, base64).\n"
    )
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    record = {**record, "page": "index.html", "onnxruntime_web": RUNTIME_VERSION}
    (out / onnx_gan.INFO_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return {**record, "size_bytes": size}
