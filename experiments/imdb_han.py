"""The hierarchical attention network on the TFDS catalogue's movie reviews: 25,000
training reviews of `imdb_reviews`, evaluated on its 25,000 test reviews.

`--config.data.name=yelp_polarity_reviews` trains on Yelp's 560,000 reviews instead (its
test split has 38,000). TFDS downloads and prepares either once (`pip install -e
'.[tfds]'`, online). Not measured on this machine (no copy offline): the model and
regularisation are experiments/polarity_han.py's, with longer reviews kept (these
reviews run longer than review polarity's sentences) and a higher `min_count` for a
vocabulary of a manageable size from 25 times as many reviews.
"""

from experiments import polarity_han


def get_config():
    config = polarity_han.get_config()
    del config.data["fold"]  # the TFDS sets come split into train and test
    config.data.update(
        name="imdb_reviews",
        train_split="train",
        eval_split="test",
        max_sentences=24,
        max_words=40,
        min_count=5,
        eval_batch_size=500,
    )
    config.train.update(num_epochs=3, log_every=100)
    return config
