"""A seconds-long variant of shakespeare_lstm for tests and smoke runs."""

from experiments import shakespeare_lstm


def get_config():
    config = shakespeare_lstm.get_config()
    config.data.update(batch_size=8, eval_batch_size=8, window=16)
    config.model.update(hidden=32, layers=2, dropout=0.0)
    config.train.update(
        num_epochs=0, num_steps=20, max_seconds=0, log_every=5, eval_every=10, checkpoint_every=10
    )
    return config
