// The generator page without a server (launch/export.py --page): the served page's
// controls (jaxdl/serve/static/page.js), with the noise drawn here (noise.js, as the
// server's draw_noise) and the exported ONNX generator run here by onnxruntime-web.
// The noise of seed A, walked towards the noise of seed B by the slider, and the chosen
// class give the picture. The address's #fragment holds label, seeds and walk; changing
// it draws that picture.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_SEED = 4294967295;
const IMAGE_PIXELS = 280; // the picture is scaled up by a whole factor to about this size
const CELL = 16; // pixels per noise number in the grid
const info = window.JAXDL_MODEL.info;
let session = null;
let rendering = false;
let renderAgain = false;

function bytesOf(base64) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

// Everything handed over as bytes: no fetch() or module import of a file:// URL.
async function createSession() {
  const runtime = window.JAXDL_ORT_WASM;
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmBinary = bytesOf(runtime.wasm);
  const glue = new Blob([runtime.glue], { type: "text/javascript" });
  ort.env.wasm.wasmPaths = { mjs: URL.createObjectURL(glue) };
  const model = bytesOf(window.JAXDL_MODEL.onnx);
  return ort.InferenceSession.create(model, { executionProviders: ["wasm"] });
}

function readSeed(input) {
  const seed = Number(input.value);
  if (input.value === "" || !Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
    throw new Error(`a seed is a whole number in [0, ${MAX_SEED}]`);
  }
  return seed;
}

function randomSeed() {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

// Grey values: black at -1, white at +1 (the noise is uniform in [-1, 1]).
function drawNoise(noise) {
  const cols = Math.ceil(Math.sqrt(noise.length));
  const rows = Math.ceil(noise.length / cols);
  const canvas = $("noise-grid");
  canvas.width = cols * CELL;
  canvas.height = rows * CELL;
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  noise.forEach((value, i) => {
    const grey = Math.round(255 * Math.min(1, Math.max(0, (value + 1) / 2)));
    context.fillStyle = `rgb(${grey},${grey},${grey})`;
    context.fillRect((i % cols) * CELL, Math.floor(i / cols) * CELL, CELL - 1, CELL - 1);
  });
}

// The generator's (1, h, w, c) output in [0, 1] as a PNG data: URL, one pixel per value.
function pictureUrl(values) {
  const [height, width, channels] = info.image_shape;
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  for (let p = 0; p < width * height; p++) {
    for (let k = 0; k < 3; k++) {
      const value = values[p * channels + (channels === 1 ? 0 : k)];
      image.data[4 * p + k] = Math.round(255 * Math.min(1, Math.max(0, value)));
    }
    image.data[4 * p + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  return canvas.toDataURL("image/png");
}

function showStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function renderOnce() {
  const seedA = readSeed($("seed"));
  const seedB = readSeed($("seed-to"));
  const t = Number($("walk").value) / 100;
  const a = uniformNoise(seedA, info.noise_dim);
  const b = uniformNoise(seedB, info.noise_dim);
  // In doubles, then float32: what the served page sends and its server reads.
  const noise = Float32Array.from(a, (x, i) => (1 - t) * x + t * b[i]);
  const feeds = { noise: new ort.Tensor("float32", noise, [1, info.noise_dim]) };
  const label = info.conditional ? Number($("label").value) : null;
  if (info.conditional) feeds.labels = new ort.Tensor("int64", BigInt64Array.of(BigInt(label)), [1]);
  const started = performance.now();
  const { images } = await session.run(feeds);
  const milliseconds = performance.now() - started;
  $("image").src = pictureUrl(images.data);
  drawNoise(noise);
  $("walk-value").textContent = t.toFixed(2);
  const what = info.conditional ? `${info.class_names[label]}, ` : "";
  $("image-caption").textContent = `${what}seed ${seedA} → ${seedB} at t = ${t.toFixed(2)}`;
  const state = new URLSearchParams({ seed: seedA, to: seedB, walk: $("walk").value });
  if (info.conditional) state.set("label", label);
  history.replaceState(null, "", `#${state}`);
  $("status").dataset.ms = milliseconds.toFixed(2);
  showStatus(`drawn in ${milliseconds.toFixed(1)} ms in this browser (onnxruntime-web, wasm)`);
}

// One picture at a time; changes made meanwhile are drawn by one more run after it.
async function render() {
  if (rendering) {
    renderAgain = true;
    return;
  }
  rendering = true;
  document.body.dataset.state = "busy";
  do {
    renderAgain = false;
    try {
      await renderOnce();
    } catch (error) {
      showStatus(error.message, true);
    }
  } while (renderAgain);
  rendering = false;
  document.body.dataset.state = "ready";
}

function restoreFromAddress() {
  const state = new URLSearchParams(location.hash.slice(1));
  for (const [key, id] of [["seed", "seed"], ["to", "seed-to"], ["walk", "walk"]]) {
    if (state.has(key)) $(id).value = state.get(key);
  }
  if (info.conditional && state.has("label")) $("label").value = state.get("label");
}

async function start() {
  $("title").textContent = info.title;
  const [height, width] = info.image_shape;
  $("about").textContent =
    `${info.noise_dim} noise numbers, uniform in [−1, 1], → ${height}×${width} pictures` +
    (info.conditional ? `, one of ${info.class_names.length} classes.` : ".");
  $("noise-caption").textContent = "noise (black −1, white +1)";
  const scale = Math.max(1, Math.floor(IMAGE_PIXELS / Math.max(height, width)));
  $("image").width = width * scale;
  $("image").height = height * scale;
  const select = $("label");
  info.class_names.forEach((name, i) => select.add(new Option(name, i)));
  $("label-field").hidden = !info.conditional;
  $("label-note").hidden = info.conditional;
  restoreFromAddress();
  showStatus("loading the generator…");
  session = await createSession();

  select.addEventListener("change", render);
  $("seed").addEventListener("change", render);
  $("seed-to").addEventListener("change", render);
  $("walk").addEventListener("input", render);
  $("new-noise").addEventListener("click", () => {
    $("seed").value = randomSeed();
    $("seed-to").value = randomSeed();
    $("walk").value = 0;
    render();
  });
  // An address typed or set by a link: draw what it names (our own replaceState fires none).
  window.addEventListener("hashchange", () => {
    restoreFromAddress();
    render();
  });
  await render();
}

start().catch((error) => {
  showStatus(`cannot start: ${error.message}`, true);
  document.body.dataset.state = "failed";
});
