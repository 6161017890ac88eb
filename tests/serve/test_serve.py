"""The generator server (jaxdl/serve, launch/serve.py): API answers against a numpy
reference, bad requests, determinism, compile-once; launch/serve.py on a real tiny VAE
run; the page in headless Chromium.

The conditional path is exercised with a test-only fake generator (the GAN is not
needed): pixel p of class c is sigmoid(noise . w[c, :, p])."""

import base64
import io
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from werkzeug.serving import make_server

from jaxdl.serve import Service, create_app, draw_noise
from jaxdl.serve.app import MAX_SEED
from jaxdl.train.run_info import load_run
from tests.conftest import ROOT

CLASSES = ["zero", "one", "two"]
IMAGE_SHAPE = (4, 5, 1)
WEIGHTS = np.asarray(2 * jax.random.normal(jax.random.PRNGKey(0), (3, 6, 20)))


class FakeConditionalGenerator:
    noise_dim = 6
    noise_distribution = "uniform"
    conditional = True

    def __init__(self):
        self.traces = 0

    def generate(self, state, noise, labels):
        self.traces += 1  # runs only while jax traces
        logits = jnp.einsum("nd,ndp->np", noise, state["w"][labels])
        return jax.nn.sigmoid(logits).reshape(-1, *IMAGE_SHAPE)


def expected_pixels(noise, label) -> np.ndarray:
    logits = np.asarray(noise, np.float32).astype(np.float64) @ WEIGHTS[label]
    unit = 1 / (1 + np.exp(-logits))
    return np.round(unit * 255).reshape(IMAGE_SHAPE[:2])


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture(scope="module")
def fake():
    generator = FakeConditionalGenerator()
    service = Service(generator, {"w": jnp.asarray(WEIGHTS)}, CLASSES, title="fake")
    return generator, service


@pytest.fixture(scope="module")
def client(fake):
    return create_app(fake[1]).test_client()


def generate(client, **body):
    return client.post("/api/generate", data=json.dumps(body))


def test_info_describes_the_generator(client):
    assert client.get("/api/info").get_json() == {
        "title": "fake",
        "noise_dim": 6,
        "noise_distribution": "uniform",
        "conditional": True,
        "class_names": CLASSES,
        "image_shape": [4, 5, 1],
    }


def test_generate_gives_the_png_of_the_model_output(client):
    noise = [0.5, -1.0, 0.25, 0.0, 1.0, -0.75]
    for label in range(3):
        response = generate(client, label=label, noise=noise)
        assert response.status_code == 200 and response.mimetype == "image/png"
        pixels = decode_png(response.data)
        assert pixels.shape == (4, 5) and pixels.dtype == np.uint8
        np.testing.assert_allclose(pixels, expected_pixels(noise, label), atol=1)
    by_name = generate(client, label="two", noise=noise)
    assert by_name.data == generate(client, label=2, noise=noise).data


def test_same_label_and_noise_give_the_same_bytes_and_a_seed_names_its_noise(client):
    noise = client.post("/api/noise", data='{"seed": 7}').get_json()
    assert noise["seed"] == 7
    np.testing.assert_array_equal(noise["noise"], draw_noise(7, 6, "uniform"))
    first = generate(client, label=1, noise=noise["noise"]).data
    assert generate(client, label=1, noise=noise["noise"]).data == first
    assert generate(client, label=1, seed=7).data == first
    assert generate(client, label=0, seed=7).data != first
    assert generate(client, label=1, seed=8).data != first


def test_noise_follows_its_distribution_and_its_seed():
    uniform = draw_noise(3, 20_000, "uniform")
    normal = draw_noise(3, 20_000, "normal")
    assert uniform.dtype == normal.dtype == np.float32
    assert uniform.min() >= -1 and uniform.max() <= 1
    np.testing.assert_allclose([uniform.mean(), uniform.var()], [0, 1 / 3], atol=0.02)
    np.testing.assert_allclose([normal.mean(), normal.std()], [0, 1], atol=0.03)
    np.testing.assert_array_equal(draw_noise(3, 5, "normal"), normal[:5])
    assert not np.array_equal(draw_noise(4, 5, "normal"), normal[:5])


BAD_REQUESTS = [
    ("/api/generate", b'{"label": 1, "seed": ', "not JSON"),
    ("/api/generate", b"\xff\xfe", "not JSON"),
    ("/api/generate", b"[1, 2]", "JSON object"),
    ("/api/generate", b'{"label": 1, "seed": 1, "colour": 2}', "unknown field(s) ['colour']"),
    ("/api/generate", b'{"label": 1, "seed": 1, "noise": [0, 0, 0, 0, 0, 0]}', "not both"),
    ("/api/generate", b'{"label": 1}', "either noise"),
    ("/api/generate", b'{"label": 3, "seed": 1}', "unknown label 3"),
    ("/api/generate", b'{"label": -1, "seed": 1}', "unknown label -1"),
    ("/api/generate", b'{"label": "three", "seed": 1}', 'unknown label "three"'),
    ("/api/generate", b'{"label": true, "seed": 1}', "unknown label true"),
    ("/api/generate", b'{"seed": 1}', "conditional: give label"),
    ("/api/generate", b'{"label": 1, "noise": [0, 0, 0]}', "noise has 3 numbers"),
    ("/api/generate", b'{"label": 1, "noise": [0, 0, 0, 0, 0, "0"]}', "list of numbers"),
    ("/api/generate", b'{"label": 1, "noise": 0.5}', "list of numbers"),
    ("/api/generate", b'{"label": 1, "noise": [0, 0, 0, 0, 0, NaN]}', "non-finite"),
    ("/api/generate", b'{"label": 1, "noise": [0, 0, 0, 0, -Infinity, 0]}', "non-finite"),
    ("/api/generate", b'{"label": 1, "noise": [0, 0, 0, 0, 1e39, 0]}', "non-finite"),
    ("/api/generate", b'{"label": 1, "noise": [0, 0, 0, 0, 1e999, 0]}', "non-finite"),
    (
        "/api/generate",
        b'{"label": 1, "noise": [0, 0, 0, 0, 1' + b"0" * 400 + b", 0]}",
        "non-finite",
    ),
    ("/api/generate", b"[" * 2000 + b"]" * 2000, "nests JSON too deeply"),
    ("/api/generate", b'{"label": 1, "seed": -1}', "seed must be an integer"),
    ("/api/generate", b'{"label": 1, "seed": 4294967296}', "seed must be an integer"),
    ("/api/generate", b'{"label": 1, "seed": 1.5}', "seed must be an integer"),
    ("/api/generate", b'{"label": 1, "seed": "1"}', "seed must be an integer"),
    ("/api/generate", b'{"label": 1, "noise": [' + b"0, " * 3000 + b"0]}", "over 4288 bytes"),
    ("/api/noise", b'{"seed": null}', "seed must be an integer"),
    ("/api/noise", b'{"seed": 1, "label": 1}', "unknown field(s) ['label']"),
]


@pytest.mark.parametrize(("path", "body", "message"), BAD_REQUESTS)
def test_bad_requests_get_400_and_one_line_then_serving_goes_on(client, path, body, message):
    response = client.post(path, data=body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert message in error and "\n" not in error
    assert generate(client, label=0, seed=MAX_SEED).status_code == 200


def test_generator_is_compiled_once_at_start(fake, client):
    generator, _ = fake
    assert generator.traces == 1
    for label in range(3):
        generate(client, label=label, noise=[0.1 * label] * 6)
        generate(client, label=label, seed=label)
    assert generator.traces == 1


def test_services_refuse_tasks_that_make_no_images():
    from jaxdl.errors import UserError

    with pytest.raises(UserError, match="makes no images"):
        Service(object(), {}, CLASSES)
    with pytest.raises(UserError, match="needs its data set's class names"):
        Service(FakeConditionalGenerator(), {"w": jnp.asarray(WEIGHTS)}, [])


# ---- launch/serve.py on a real run ---------------------------------------------------


def first_line(stream, timeout: float) -> str:
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=timeout)


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on `port` (from /proc/net/tcp)."""
    addresses = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = row.split()[1], row.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
            addresses.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    return addresses


def post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def start_server(*args: str) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    command = [sys.executable, str(ROOT / "launch/serve.py"), "--port=0", *args]
    return subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_launcher_serves_a_vae_run_on_loopback(tiny_vae_run, tmp_path):
    workdir, trained = tiny_vae_run
    assert trained.returncode == 0, trained.stderr[-3000:]
    # All at once (start-up is most of the time): default host, --host, not a run, a port
    # in use.
    taken = socket.create_server(("127.0.0.1", 0))
    taken_port = taken.getsockname()[1]
    servers = [
        start_server(f"--workdir={workdir}"),
        start_server(f"--workdir={workdir}", "--host=0.0.0.0"),
        start_server(f"--workdir={tmp_path}"),
        start_server(f"--workdir={workdir}", f"--port={taken_port}"),
    ]
    default, everywhere, not_a_run, port_in_use = servers
    try:
        banner = first_line(default.stdout, timeout=120)
        assert banner.startswith("serving run: autoencode, step 20 at http://127.0.0.1:"), banner
        url = banner.split(" at ")[1].strip()
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        assert listening_addresses(port) == {"127.0.0.1"}
        other_port = int(first_line(everywhere.stdout, timeout=120).rstrip("/\n").rsplit(":")[-1])
        assert listening_addresses(other_port) == {"0.0.0.0"}

        with urllib.request.urlopen(url + "api/info", timeout=30) as response:
            info = json.load(response)
        assert (info["conditional"], info["noise_dim"], info["class_names"]) == (False, 4, [])
        assert info["noise_distribution"] == "normal" and info["image_shape"] == [28, 28, 1]
        assert post(url + "api/generate", b'{"label": 0, "seed": 1}') == (
            400,
            b'{"error":"this generator is unconditional: leave out label"}\n',
        )
        status, answer = post(url + "api/generate", b'{"noise": [' + b"0, " * 300_000 + b"0]}")
        assert (status, json.loads(answer)) == (400, {"error": "the body is over 4224 bytes"})
        status, png = post(url + "api/generate", b'{"seed": 1}')
        assert status == 200
        _, _, task, state = load_run(workdir)
        noise = jnp.asarray(draw_noise(1, 4, "normal"))[None]
        reference = np.round(np.asarray(task.generate(state, noise, jnp.zeros(1, jnp.int32))) * 255)
        np.testing.assert_allclose(decode_png(png), reference[0, ..., 0], atol=1)
        with urllib.request.urlopen(url, timeout=30) as response:
            assert b'id="new-noise"' in response.read()

        default.send_signal(signal.SIGTERM)
        _, log = default.communicate(timeout=30)
        assert default.returncode == 0
        assert '"POST /api/generate HTTP/1.1" 400' in log and "\x1b[" not in log  # no colours
        _, stderr = not_a_run.communicate(timeout=120)
        assert not_a_run.returncode == 1
        error = f"error: {tmp_path} is not a run directory: no config.json"
        assert stderr.splitlines()[-1] == error
        _, stderr = port_in_use.communicate(timeout=120)
        assert port_in_use.returncode == 1
        error = f"error: cannot listen on 127.0.0.1:{taken_port}: Address already in use"
        assert stderr.splitlines()[-1].startswith(error)
    finally:
        taken.close()
        for server in servers:
            if server.poll() is None:
                server.kill()
                server.wait()


# ---- the page in headless Chromium --------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        message = "needs chromium and chromedriver (make test installs them with apt-get)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # No sandbox, no GPU, no shared-memory mount, no network: a root CI container.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=900,650",
        "--no-proxy-server",
    ):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=DriverService(driver), options=options)
    yield chrome
    chrome.quit()


@pytest.fixture(scope="module")
def fake_server(fake):
    server = make_server("127.0.0.1", 0, create_app(fake[1]), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    thread.join()


def shown_pixels(browser) -> np.ndarray:
    src = browser.find_element("id", "image").get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    return decode_png(base64.b64decode(src.split(",", 1)[1]))


def wait_until(browser, condition) -> str:
    """The picture's src once the page has no request in flight and `condition()` holds."""
    from selenium.webdriver.support.ui import WebDriverWait

    def drawn(driver):
        # In this order: once the page is ready, nothing the test did is left to draw.
        ready = driver.execute_script("return document.body.dataset.state") == "ready"
        if not (ready and condition()):
            return False
        return driver.find_element("id", "image").get_attribute("src") or False

    return WebDriverWait(browser, 30).until(drawn)


def wait_for_new_picture(browser, old_src: str | None) -> str:
    image = browser.find_element("id", "image")
    return wait_until(browser, lambda: image.get_attribute("src") != old_src)


def shown_walk(browser) -> str:
    return browser.find_element("id", "walk-value").text


def noise_of(seed: int) -> np.ndarray:
    return draw_noise(seed, 6, "uniform")


@pytest.mark.slow
def test_page_in_chromium_class_new_noise_walk_and_seed(browser, fake_server, tmp_path):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    browser.get(fake_server)
    src = wait_for_new_picture(browser, None)
    assert browser.find_element("id", "title").text == "fake"
    select = Select(browser.find_element("id", "label"))
    assert [o.text for o in select.options] == CLASSES
    assert not browser.find_element("id", "label-note").is_displayed()
    np.testing.assert_allclose(shown_pixels(browser), expected_pixels(noise_of(0), 0), atol=1)

    select.select_by_visible_text("two")
    src = wait_for_new_picture(browser, src)
    np.testing.assert_allclose(shown_pixels(browser), expected_pixels(noise_of(0), 2), atol=1)

    browser.find_element("id", "new-noise").click()
    src = wait_for_new_picture(browser, src)
    seed = int(browser.find_element("id", "seed").get_attribute("value"))
    seed_to = int(browser.find_element("id", "seed-to").get_attribute("value"))
    assert seed != 0
    np.testing.assert_allclose(shown_pixels(browser), expected_pixels(noise_of(seed), 2), atol=1)
    grid = browser.find_element("id", "noise-grid")
    assert (grid.size["width"], grid.size["height"]) == (3 * 16 + 2, 2 * 16 + 2)  # + border

    browser.find_element("id", "walk").send_keys(*[Keys.ARROW_RIGHT] * 25)
    src = wait_until(browser, lambda: shown_walk(browser) == "0.25")
    walked = 0.75 * noise_of(seed).astype(np.float64) + 0.25 * noise_of(seed_to)
    np.testing.assert_allclose(shown_pixels(browser), expected_pixels(walked, 2), atol=1)
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert Image.open(tmp_path / "page.png").size[0] > 0

    # The address holds class, seeds and walk: loading it again draws the same picture.
    address = browser.current_url
    assert f"seed={seed}" in address and "label=2" in address and "walk=25" in address
    browser.get("about:blank")
    browser.get(address)
    assert wait_for_new_picture(browser, None) == src
