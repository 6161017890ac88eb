"""A seconds-long variant of fashion_cgan for tests and smoke runs."""

from experiments import fashion_cgan


def get_config():
    config = fashion_cgan.get_config()
    config.data.update(batch_size=16, eval_batch_size=125)
    config.model.update(g_width=8, d_width=8)
    config.train.update(
        num_epochs=0, num_steps=6, max_seconds=0, log_every=2, eval_every=3, checkpoint_every=3
    )
    return config
