"""A seconds-long variant of polarity_han for tests and smoke runs."""

from experiments import polarity_han


def get_config():
    config = polarity_han.get_config()
    config.data.update(batch_size=8, eval_batch_size=8, max_sentences=5, max_words=6)
    config.data.min_count = 1
    config.model.update(embed=8, hidden=6, attention=8)
    config.train.update(num_epochs=0, num_steps=6, log_every=2, eval_every=3, checkpoint_every=3)
    return config
