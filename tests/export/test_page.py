"""launch/export.py --page: the seed-to-noise function in JavaScript against the served
page's draw_noise (under node), and the exported folder opened from file:// in headless
Chromium, its pictures against the run's JAX generator."""

import base64
import json
import os
import re
import shutil
import subprocess

import jax
import numpy as np
import pytest

from jaxdl.export import page
from jaxdl.serve import draw_noise
from jaxdl.serve.app import MAX_SEED
from jaxdl.train.run_info import load_run
from tests.conftest import run_script
from tests.serve.test_serve import browser, decode_png  # noqa: F401 (a fixture)


def needs(what: str, present: bool) -> None:
    """Skips without `what`; fails instead where CI is set (make test provides it)."""
    if not present:
        message = f"needs {what}"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)


def test_noise_js_draws_what_the_server_draws():
    needs("node", shutil.which("node") is not None)
    seeds, dims = [0, 1, 2, 7, 12345, 2**31, MAX_SEED], [100, 7, 1]
    script = f"""
        const {{ uniformNoise }} = require({json.dumps(str(page.STATIC / "noise.js"))});
        const out = [];
        for (const seed of {json.dumps(seeds)})
          for (const dim of {json.dumps(dims)}) out.push(Array.from(uniformNoise(seed, dim)));
        let refused = "";
        try {{ uniformNoise({MAX_SEED + 1}, 3); }} catch (e) {{ refused = e.message; }}
        console.log(JSON.stringify({{ out, refused }}));
    """
    result = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    drawn = iter(answer["out"])
    for seed in seeds:
        for dim in dims:
            # Exactly: JSON carries the float32 values as doubles, without rounding.
            expected = draw_noise(seed, dim, "uniform").astype(np.float64)
            np.testing.assert_array_equal(np.array(next(drawn), np.float64), expected)
    assert answer["refused"] == f"a seed is a whole number in [0, {MAX_SEED}], got {MAX_SEED + 1}"


@pytest.fixture(scope="module")
def exported_page(tiny_cgan_run, tmp_path_factory):
    needs("onnxruntime-web (make web-runtime)", (page.default_runtime() / ".fetched").exists())
    workdir, trained = tiny_cgan_run
    assert trained.returncode == 0, trained.stderr[-3000:]
    out = tmp_path_factory.mktemp("page") / "page"
    result = run_script("launch/export.py", f"--workdir={workdir}", f"--out={out}", "--page")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, out, result.stdout


def caption(browser) -> str:  # noqa: F811
    return browser.find_element("id", "image-caption").text


def show(browser, label: int, seed: int, to: int, walk: int, class_name: str) -> np.ndarray:  # noqa: F811
    """Sets the address's fragment and waits for its picture; returns its pixels."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.execute_script(f"location.hash = 'label={label}&seed={seed}&to={to}&walk={walk}'")
    want = f"{class_name}, seed {seed} → {to} at t = {walk / 100:.2f}"
    state = lambda: browser.execute_script("return document.body.dataset.state")
    WebDriverWait(browser, 30).until(lambda _: state() == "ready" and caption(browser) == want)
    src = browser.find_element("id", "image").get_attribute("src")
    return decode_png(base64.b64decode(src.split(",", 1)[1]))[..., 0]


@pytest.mark.slow
def test_page_from_file_draws_the_generators_pictures(exported_page, browser):  # noqa: F811
    from selenium.webdriver.support.ui import WebDriverWait

    workdir, out, stdout = exported_page
    assert re.search(r"the generator page \(\d+\.\d MiB\)", stdout), stdout
    assert (out / "vendor" / "VERSION").read_text().startswith("onnxruntime-web 1.31.1")
    assert "MIT License" in (out / "vendor" / "LICENSE").read_text()

    browser.get((out / "index.html").as_uri())
    ready = lambda _: browser.execute_script("return document.body.dataset.state") == "ready"
    WebDriverWait(browser, 60).until(ready)
    assert browser.find_element("id", "title").text == f"{workdir.name}: gan, step 6"
    _, info, task, state = load_run(workdir)
    names = info["class_names"]

    # 3 classes x 3 seeds, and one walk halfway, against JAX on the same noise.
    cases = [(c, s, s + 1, 0) for c in (0, 4, 9) for s in (0, 1, 123456789)] + [(7, 5, 6, 50)]
    noise_of = lambda seed: draw_noise(seed, 100, "uniform").astype(np.float64)
    # The walk in doubles, then float32, as the page (and the served page) computes it.
    walked = [(1 - w / 100) * noise_of(s) + w / 100 * noise_of(t) for _, s, t, w in cases]
    labels = np.array([c for c, *_ in cases], np.int32)
    pixels_of = lambda images: np.round(np.clip(np.asarray(images), 0, 1) * 255)[..., 0]
    expected = pixels_of(jax.jit(task.generate)(state, np.float32(walked), labels))
    times = []
    for (label, seed, to, walk), want in zip(cases, expected, strict=True):
        pixels = show(browser, label, seed, to, walk, names[label])
        np.testing.assert_allclose(pixels, want, atol=1, rtol=0)
        status = browser.find_element("id", "status")
        assert re.fullmatch(
            r"drawn in \d+\.\d ms in this browser \(onnxruntime-web, wasm\)", status.text
        )
        times.append(float(status.get_attribute("data-ms")))
    assert len({expected[i].tobytes() for i in range(9)}) == 9  # seeds and classes matter
    assert all(0 < t < 5000 for t in times), times

    # New noise: random seeds, written into the address; the picture is theirs.
    before = caption(browser)
    browser.find_element("id", "new-noise").click()
    WebDriverWait(browser, 30).until(lambda _: caption(browser) != before and ready(_))
    seed = int(browser.find_element("id", "seed").get_attribute("value"))
    assert f"seed={seed}" in browser.current_url and "label=7" in browser.current_url
    src = browser.find_element("id", "image").get_attribute("src")
    pixels = decode_png(base64.b64decode(src.split(",", 1)[1]))[..., 0]
    noise = np.float32([noise_of(seed)])
    image = pixels_of(jax.jit(task.generate)(state, noise, np.array([7], np.int32)))[0]
    np.testing.assert_allclose(pixels, image, atol=1, rtol=0)
