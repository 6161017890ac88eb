"""A Flask app around one generator: the page (static/) and a small JSON API.

    GET  /                 the page
    GET  /api/info         {title, noise_dim, noise_distribution, conditional,
                            class_names, image_shape}
    POST /api/noise        {"seed": s} -> {"seed": s, "noise": [noise_dim numbers]}
    POST /api/generate     {"label": c, "noise": [...]} or {"label": c, "seed": s} -> PNG
                           (label: a class index or name; only for a conditional generator)

A bad request (malformed JSON, unknown field or label, wrong noise length, non-finite
numbers, a body over the size limit) gets HTTP 400 and {"error": "<one line>"}; the
server goes on serving. The noise of seed s is numpy's `default_rng(s)`, so a seed names
one picture everywhere.
"""

import io
import json

import jax
import jax.numpy as jnp
import numpy as np
from flask import Flask, Response, jsonify, request
from PIL import Image
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from jaxdl.errors import UserError, check, check_choice

NOISE_DISTRIBUTIONS = ("uniform", "normal")
MAX_SEED = 2**32 - 1  # JavaScript's page draws seeds as exact integers in this range
# A JSON number takes at most ~26 characters ('-1.2345678901234567e-123, '); the rest is room.
_BYTES_PER_NOISE_NUMBER = 32
_BODY_BASE_BYTES = 4096


class RequestError(UserError):
    """A bad API request, answered with HTTP 400 and this one line."""


def draw_noise(seed: int, dim: int, distribution: str) -> np.ndarray:
    """The float32 (dim,) noise of `seed`: uniform in [-1, 1] or standard normal."""
    rng = np.random.default_rng(seed)
    if distribution == "uniform":
        return rng.uniform(-1.0, 1.0, dim).astype(np.float32)
    return rng.standard_normal(dim, dtype=np.float32)


class Service:
    """A Generator task (tasks/base.py) and its state, with `generate` compiled once, at
    construction, for one picture: ahead of time, so another shape fails instead of
    compiling again. Each picture is then one call."""

    def __init__(self, task, state, class_names, title: str = "generator"):
        check(
            hasattr(task, "generate"),
            f"a {type(task).__name__} makes no images: serving needs a task with generate()",
        )
        check_choice("noise_distribution", task.noise_distribution, NOISE_DISTRIBUTIONS)
        check(
            not task.conditional or len(class_names) > 0,
            "a conditional generator needs its data set's class names",
        )
        self.state = state
        self.noise_dim = int(task.noise_dim)
        self.noise_distribution = task.noise_distribution
        self.conditional = bool(task.conditional)
        self.class_names = [str(c) for c in class_names] if self.conditional else []
        self.title = title
        self.max_body_bytes = _BODY_BASE_BYTES + _BYTES_PER_NOISE_NUMBER * self.noise_dim

        def pixels(state, noise, labels):
            images = task.generate(state, noise, labels)
            return jnp.round(jnp.clip(images, 0.0, 1.0) * 255).astype(jnp.uint8)

        noise = jax.ShapeDtypeStruct((1, self.noise_dim), jnp.float32)
        labels = jax.ShapeDtypeStruct((1,), jnp.int32)
        self._pixels = jax.jit(pixels).lower(state, noise, labels).compile()
        self.image_shape = tuple(self._pixels.out_info.shape[1:])

    @property
    def info(self) -> dict:
        return {
            "title": self.title,
            "noise_dim": self.noise_dim,
            "noise_distribution": self.noise_distribution,
            "conditional": self.conditional,
            "class_names": self.class_names,
            "image_shape": list(self.image_shape),
        }

    def png(self, noise: np.ndarray, label: int) -> bytes:
        """The picture of one float32 (noise_dim,) noise vector and a class index, as PNG."""
        labels = np.array([label], np.int32)
        pixels = np.asarray(self._pixels(self.state, noise[None], labels))[0]
        buffer = io.BytesIO()
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, "PNG")
        return buffer.getvalue()


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_body(body: bytes, fields: tuple[str, ...]) -> dict:
    """A JSON object with only `fields` as keys, else RequestError."""
    try:
        value = json.loads(body)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RequestError(f"the body is not JSON ({e})") from None
    except RecursionError:
        raise RequestError("the body nests JSON too deeply") from None
    if not isinstance(value, dict):
        raise RequestError(f"the body must be a JSON object with fields {list(fields)}")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise RequestError(f"unknown field(s) {unknown}; expected {list(fields)}")
    return value


def parse_seed(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise RequestError(f"seed must be an integer in [0, {MAX_SEED}], got {_short(value)}")
    return value


def parse_generate(body: dict, service: Service) -> tuple[np.ndarray, int]:
    """(float32 noise, class index) of a /api/generate body, else RequestError."""
    if ("noise" in body) == ("seed" in body):
        raise RequestError("give either noise (a list of numbers) or seed, not both or none")
    if "seed" in body:
        noise = draw_noise(parse_seed(body["seed"]), service.noise_dim, service.noise_distribution)
    else:
        values = body["noise"]
        if not isinstance(values, list) or any(
            isinstance(v, bool) or not isinstance(v, int | float) for v in values
        ):
            raise RequestError(f"noise must be a list of numbers, got {_short(values)}")
        if len(values) != service.noise_dim:
            raise RequestError(
                f"noise has {len(values)} numbers; this generator takes {service.noise_dim}"
            )
        try:
            with np.errstate(over="ignore"):  # beyond float32 becomes inf: refused below
                noise = np.asarray(values, np.float64).astype(np.float32)
        except OverflowError:  # an integer beyond float64
            noise = np.full(len(values), np.inf, np.float32)
        if not np.all(np.isfinite(noise)):
            raise RequestError("noise has non-finite numbers (NaN, Infinity or beyond float32)")
    return noise, parse_label(body.get("label"), service)


def parse_label(label, service: Service) -> int:
    names = service.class_names
    if not service.conditional:
        if label is not None:
            raise RequestError("this generator is unconditional: leave out label")
        return 0
    if label is None:
        raise RequestError(
            f"this generator is conditional: give label, a class index in "
            f"[0, {len(names) - 1}] or a name"
        )
    if isinstance(label, str) and label in names:
        return names.index(label)
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(names):
        return label
    raise RequestError(
        f"unknown label {_short(label)}: give a class index in [0, {len(names) - 1}] or a name"
    )


def create_app(service: Service) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = service.max_body_bytes

    @app.get("/")
    def page():
        return app.send_static_file("index.html")

    @app.get("/api/info")
    def info():
        return jsonify(service.info)

    @app.post("/api/noise")
    def noise():
        seed = parse_seed(parse_body(request.get_data(), ("seed",)).get("seed"))
        values = draw_noise(seed, service.noise_dim, service.noise_distribution)
        return jsonify(seed=seed, noise=values.tolist())

    @app.post("/api/generate")
    def generate():
        body = parse_body(request.get_data(), ("label", "noise", "seed"))
        noise, label = parse_generate(body, service)
        return Response(service.png(noise, label), mimetype="image/png")

    @app.errorhandler(RequestError)
    def bad_request(error):
        return jsonify(error=str(error)), 400

    @app.errorhandler(HTTPException)
    def http_error(error):
        if isinstance(error, RequestEntityTooLarge):  # the issue asks 400 for every bad body
            return jsonify(error=f"the body is over {service.max_body_bytes} bytes"), 400
        return jsonify(error=f"{error.code} {error.name}"), error.code

    return app
