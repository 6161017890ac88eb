"""Fashion-MNIST with a two-layer perceptron (jaxdl/models/mlp.py): the worked example of
adding a model, two files and no other edit (WORKSPACE.md, "How to add a model").
Untuned: a baseline beside fashion_cnn.py."""

from jaxdl.configs import base_config


def get_config():
    config = base_config(model="mlp")  # the classify task, with mlp's registered defaults
    config.model.update(hidden=(512, 256), dropout=0.2)
    config.task.update(label_smoothing=0.1)
    config.optimizer.update(learning_rate=1e-3, weight_decay=0.01, schedule="warmup_cosine")
    config.train.update(num_epochs=10, log_every=200, eval_every=0, checkpoint_every=2340)
    return config
