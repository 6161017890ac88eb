"""Data sources, one file each, registered beside their code (registry.source): every
module here is imported on the first registry lookup. `--config.data.name=<source>`
switches config.data to that source's defaults (configs.DATA_COMMON kept)."""
