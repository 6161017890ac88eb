"""jaxdl: a JAX research framework with functional training loops."""
