"""A trained run's inference function outside jaxdl (launch/export.py): StableHLO with its
weights (`stablehlo`), a GAN's generator as ONNX (`onnx_gan`)."""
