"""The config sections every experiment starts from; experiments change what they need."""

import ml_collections

from jaxdl import optim


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = dict(
        name="fashion_mnist",  # a TFDS name
        source="auto",  # auto | local | tfds (see jaxdl/data/sources.py)
        data_dir="",  # local copies; else $JAXDL_DATA_DIR, else ../shared/data
        train_split="train",
        eval_split="test",
        batch_size=128,  # global, over all devices and hosts
        eval_batch_size=1000,
        prefetch=2,
    )
    config.task = dict(name="classify", label_smoothing=0.0, flip=False, shift=0)
    config.model = dict(
        name="cnn",
        stages=((32, 32), (64, 64)),
        kernel_size=3,
        batch_norm=True,
        dropout=0.0,
        dense=128,
        stem_block=1,
        conv_impl="matmul",
    )
    config.optimizer = optim.default_config()
    config.train = dict(
        num_epochs=1.0,
        num_steps=0,  # > 0 overrides num_epochs
        max_seconds=0.0,  # wall-clock budget (0 = none): then a final eval and checkpoint
        log_every=50,
        eval_every=0,  # steps; 0 = once per epoch (and always at the end)
        checkpoint_every=1000,  # steps; 0 = only at the end (and on SIGTERM or budget)
        keep_checkpoints=3,
        plot=True,  # write workdir/metrics.png (every metric over steps) when the run stops
    )
    # launch/sweep.py: up to `vmap` trials differing only in seed and optimizer
    # learning_rate / weight_decay / clip_norm train in one vmapped step (1 = one run each),
    # `vmap_chunk` of them vmapped at a time (0: all on GPU/TPU, 1 on CPU, whose caches
    # a K-trial step overflows; bench/results/sweep_vmap.md).
    config.sweep = dict(vmap=1, vmap_chunk=0)
    return config
