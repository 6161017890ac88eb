"""Fashion-MNIST VAE: diagonal Gaussian posterior, Bernoulli likelihood on grey values.

eval/loss is the test negative ELBO in nats per image (one posterior sample per image);
eval/iwae_nll the importance-weighted bound with task.iwae_samples samples. Pictures of
reconstructions, prior samples and same-class interpolations go to workdir/images/ at
each eval. Tuned to the 5-minute budget of bench/vae.py on a 2-core CPU.
"""

from jaxdl.configs import base_config


def get_config():
    # The autoencoder model and autoencode task defaults (jaxdl/models/autoencoder.py,
    # jaxdl/tasks/autoencode.py) are this experiment's: MLP 512-256, latent 32, Bernoulli
    # likelihood, KL warm-up over 2,000 steps, IWAE k=16 at each eval.
    config = base_config(model="autoencoder", task="autoencode")
    config.data.update(batch_size=128, eval_batch_size=1000)
    config.optimizer.update(
        name="adam",
        learning_rate=2e-3,
        clip="global_norm",
        clip_norm=100.0,  # losses are sums over 784 pixels: gradients are large
        schedule="warmup_cosine",
        warmup_fraction=0.02,
        final_lr_fraction=0.02,
    )
    config.train.update(
        num_epochs=60,
        max_seconds=300.0,
        log_every=100,
        eval_every=5000,
        checkpoint_every=5000,
    )
    return config
