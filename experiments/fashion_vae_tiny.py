"""A seconds-long variant of fashion_vae for tests and smoke runs."""

from experiments import fashion_vae


def get_config():
    config = fashion_vae.get_config()
    config.data.update(batch_size=32, eval_batch_size=250)
    config.task.update(kl_warmup_steps=5, iwae_samples=4)
    config.model.update(latent=4, hidden=(32,), channels=(4, 8))
    config.train.update(
        num_epochs=0, num_steps=20, max_seconds=0, log_every=5, eval_every=10, checkpoint_every=10
    )
    return config
