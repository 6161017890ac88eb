"""A seconds-long variant of fashion_cnn for tests and smoke runs."""

from experiments import fashion_cnn


def get_config():
    config = fashion_cnn.get_config()
    config.data.batch_size = 32
    config.data.eval_batch_size = 500
    config.model.update(
        stem_block=1, stages=((8,), (16,)), dense=32, dropout=0.0, bias_before_norm=False
    )
    config.train.update(
        num_epochs=0, num_steps=20, max_seconds=0, log_every=5, eval_every=10, checkpoint_every=10
    )
    return config
