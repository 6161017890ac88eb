"""Fashion-MNIST class-conditional GAN: sub-pixel generator with a label embedding,
projection discriminator with an R1 penalty on real images and an auxiliary class head,
EMA of the generator for sampling.

R1 (gamma 1) makes each step slower but learns much faster per step; the auxiliary
classifier (weight 0.2) raises the share of samples recognised as their class. The
trials behind both choices: bench/results/gan.md.

Sample grids (one row per class) go to workdir/images/ at each eval; launch/gan_eval.py
judges a run with the Fashion-MNIST classifier (class-correct rate, Fréchet distance);
bench/gan.py runs this experiment for 30 minutes and reports both.
"""

from jaxdl.configs import base_config


def get_config():
    # The dcgan model and gan task defaults (jaxdl/models/gan.py, jaxdl/tasks/gan.py) are
    # this experiment's: class-conditional, width 16, R1 gamma 1, class head weight 0.2,
    # the discriminator's Adam 2e-4 (b1 0.5, b2 0.99), EMA 0.999.
    config = base_config(model="dcgan", task="gan")
    config.data.update(batch_size=32, eval_batch_size=1000)
    config.optimizer.update(config.task.d_optimizer)  # the generator's Adam: the same
    config.train.update(
        num_epochs=1000,
        max_seconds=1800.0,
        log_every=200,
        eval_every=1000,
        checkpoint_every=500,
        keep_checkpoints=100,  # bench/gan.py judges them all: metrics over steps
    )
    return config
