"""The generator page and its JSON API, for any task with `generate` (tasks/base.py
`Generator`): a GAN's generator or an AE/VAE decoder. launch/serve.py runs it."""

from jaxdl.serve.app import RequestError, Service, create_app, draw_noise

__all__ = ["RequestError", "Service", "create_app", "draw_noise"]
