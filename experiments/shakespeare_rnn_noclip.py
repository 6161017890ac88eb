"""Clipping demo, the unclipped half: a ReLU RNN trained by plain SGD at a high learning
rate. Within a few dozen steps an exploding gradient overflows to inf/NaN and the
trainer stops, naming the step and keeping the last good checkpoint.

Its twin shakespeare_rnn_clip.py differs only in optimizer.clip; bench/clipping_demo.py
runs both and plots their gradient norms.
"""

from experiments import shakespeare_lstm


def get_config():
    config = shakespeare_lstm.get_config()
    config.data.update(batch_size=32, window=64)
    # ReLU: nothing bounds the recurrent activations, so an explosion reaches inf (a tanh
    # RNN saturates instead, and its loss grows large but stays finite).
    config.model.update(cell="rnn", activation="relu", hidden=128, layers=1, dropout=0.0)
    config.optimizer.update(
        name="sgd",
        learning_rate=0.1,
        weight_decay=0.0,
        clip="none",
        schedule="constant",
        warmup_fraction=0.0,
    )
    config.train.update(
        num_epochs=0,
        num_steps=1000,
        max_seconds=0,
        log_every=1,  # the gradient norm of every step
        eval_every=250,
        checkpoint_every=5,
        keep_checkpoints=2,
    )
    return config
