// The generator page: the noise of seed A, walked towards the noise of seed B by the
// slider, goes to /api/generate with the chosen class; the picture and the noise are drawn.
// The address's #fragment holds label, seeds and walk, so a picture can be reproduced.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_SEED = 4294967295;
const IMAGE_PIXELS = 280; // the picture is scaled up by a whole factor to about this size
const CELL = 16; // pixels per noise number in the grid
let info = null;
const noiseBySeed = new Map(); // seed -> Promise of its noise (the server draws it)
let rendering = false;
let renderAgain = false;

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  if (!response.ok) {
    const detail = await response.json().catch(() => ({ error: response.statusText }));
    throw new Error(detail.error);
  }
  return response;
}

function noiseOf(seed) {
  if (!noiseBySeed.has(seed)) {
    const noise = api("/api/noise", { seed }).then((r) => r.json()).then((b) => b.noise);
    noise.catch(() => noiseBySeed.delete(seed));
    noiseBySeed.set(seed, noise);
  }
  return noiseBySeed.get(seed);
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

// Grey values: black at the low end of the noise's usual range, white at the high end.
function drawNoise(noise) {
  const span = info.noise_distribution === "uniform" ? 1 : 2.5;
  const cols = Math.ceil(Math.sqrt(noise.length));
  const rows = Math.ceil(noise.length / cols);
  const canvas = $("noise-grid");
  canvas.width = cols * CELL;
  canvas.height = rows * CELL;
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  noise.forEach((value, i) => {
    const unit = Math.min(1, Math.max(0, (value + span) / (2 * span)));
    const grey = Math.round(255 * unit);
    context.fillStyle = `rgb(${grey},${grey},${grey})`;
    context.fillRect((i % cols) * CELL, Math.floor(i / cols) * CELL, CELL - 1, CELL - 1);
  });
}

function asDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function showStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function renderOnce() {
  const seedA = readSeed($("seed"));
  const seedB = readSeed($("seed-to"));
  const t = Number($("walk").value) / 100;
  const [a, b] = await Promise.all([noiseOf(seedA), noiseOf(seedB)]);
  const noise = a.map((x, i) => (1 - t) * x + t * b[i]);
  const request = { noise };
  if (info.conditional) request.label = Number($("label").value);
  const started = performance.now();
  const picture = await (await api("/api/generate", request)).blob();
  const milliseconds = performance.now() - started;
  $("image").src = await asDataUrl(picture);
  drawNoise(noise);
  $("walk-value").textContent = t.toFixed(2);
  const what = info.conditional ? `${info.class_names[request.label]}, ` : "";
  $("image-caption").textContent = `${what}seed ${seedA} → ${seedB} at t = ${t.toFixed(2)}`;
  const state = new URLSearchParams({ seed: seedA, to: seedB, walk: $("walk").value });
  if (info.conditional) state.set("label", request.label);
  history.replaceState(null, "", `#${state}`);
  showStatus(`generated in ${milliseconds.toFixed(0)} ms (request and answer)`);
}

// One request at a time; changes made meanwhile are drawn by one more request after it.
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
  info = await (await api("/api/info")).json();
  $("title").textContent = info.title;
  const [height, width] = info.image_shape;
  const kind = info.noise_distribution === "uniform" ? "uniform in [−1, 1]" : "standard normal";
  $("about").textContent =
    `${info.noise_dim} noise numbers, ${kind}, → ${height}×${width} pictures` +
    (info.conditional ? `, one of ${info.class_names.length} classes.` : ".");
  const span = info.noise_distribution === "uniform" ? "1" : "2.5";
  $("noise-caption").textContent = `noise (black −${span}, white +${span})`;
  const scale = Math.max(1, Math.floor(IMAGE_PIXELS / Math.max(height, width)));
  $("image").width = width * scale;
  $("image").height = height * scale;
  const select = $("label");
  info.class_names.forEach((name, i) => select.add(new Option(name, i)));
  $("label-field").hidden = !info.conditional;
  $("label-note").hidden = info.conditional;
  restoreFromAddress();

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
  await render();
}

start().catch((error) => showStatus(error.message, true));
