"""A trained run's inference function outside jaxdl (launch/export.py): StableHLO with its
weights (`stablehlo`), a GAN's generator as ONNX (`onnx_gan`), and the generator page as
static files that run it in the browser (`page`, with `noise.js`: the seed's noise exactly
as jaxdl/serve draws it)."""
