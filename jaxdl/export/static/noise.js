// The noise of a seed, exactly as jaxdl/serve/app.py's draw_noise draws it for the served
// page: numpy's default_rng(seed).uniform(-1, 1, dim).astype(float32), that is PCG64
// seeded through SeedSequence, one double per number from the top 53 bits of each 64-bit
// output. tests/export/test_page.py checks it against draw_noise under node.
"use strict";

const M64 = (1n << 64n) - 1n;
const M128 = (1n << 128n) - 1n;
const PCG_MULT = 0x2360ed051fc65da44385df649fccf645n;

// SeedSequence(seed).generate_state(4, uint64) for a seed in [0, 2**32 - 1].
function seedSequenceState(seed) {
  let hashA = 0x43b0d7e5;
  const hashmix = (value) => {
    value = (value ^ hashA) >>> 0;
    hashA = Math.imul(hashA, 0x931e8875) >>> 0;
    value = Math.imul(value, hashA) >>> 0;
    return (value ^ (value >>> 16)) >>> 0;
  };
  const mix = (x, y) => {
    const result = (Math.imul(0xca01f9dd, x) - Math.imul(0x4973f715, y)) >>> 0;
    return (result ^ (result >>> 16)) >>> 0;
  };
  const pool = [seed >>> 0, 0, 0, 0].map(hashmix);
  for (let src = 0; src < 4; src++) {
    for (let dst = 0; dst < 4; dst++) {
      if (src !== dst) pool[dst] = mix(pool[dst], hashmix(pool[src]));
    }
  }
  let hashB = 0x8b51f9dd;
  const words = [];
  for (let i = 0; i < 8; i++) {
    let value = (pool[i % 4] ^ hashB) >>> 0;
    hashB = Math.imul(hashB, 0x58f38ded) >>> 0;
    value = Math.imul(value, hashB) >>> 0;
    words.push(BigInt((value ^ (value >>> 16)) >>> 0));
  }
  return [0, 1, 2, 3].map((i) => words[2 * i] | (words[2 * i + 1] << 32n));
}

// Float32Array of `dim` numbers uniform in [-1, 1): numpy's default_rng(seed).uniform.
function uniformNoise(seed, dim) {
  if (!Number.isInteger(seed) || seed < 0 || seed > 4294967295) {
    throw new Error(`a seed is a whole number in [0, 4294967295], got ${seed}`);
  }
  const [s0, s1, s2, s3] = seedSequenceState(seed);
  const increment = (((s2 << 64n) | s3) << 1n | 1n) & M128;
  const step = (state) => (state * PCG_MULT + increment) & M128;
  let state = (step(0n) + ((s0 << 64n) | s1)) & M128;
  state = step(state);
  const noise = new Float32Array(dim);
  for (let i = 0; i < dim; i++) {
    state = step(state);
    const x = ((state >> 64n) ^ state) & M64;
    const rotation = state >> 122n;
    const output = ((x >> rotation) | (x << ((64n - rotation) & 63n))) & M64;
    noise[i] = -1.0 + 2.0 * (Number(output >> 11n) * (1.0 / 9007199254740992.0));
  }
  return noise;
}

if (typeof module !== "undefined") module.exports = { uniformNoise };
