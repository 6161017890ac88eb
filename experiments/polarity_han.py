"""Hierarchical attention network on review polarity v2.0, one cross-validation fold.

`--config.data.fold=k` holds out the reviews cv{k}xx (the standard ten folds); the
vocabulary comes from the other nine. 10-fold accuracy: launch/crossval.py (or
bench/polarity.py, which sets it beside a bag-of-words logistic regression).

Sized for the 2-core CPU machine (a fold in minutes there): a small GRU, reviews cut to
their last max_sentences sentences (where reviewers give their verdict) of max_words
words (the share of words cut is in run.json), and strong regularisation for only 1,800
training reviews (word dropout, embedding / sentence / document dropout 0.5, decoupled
weight decay). With no pretrained embeddings offline, the embedding starts from PPMI-SVD
word vectors of the training folds' own text (jaxdl/data/word_vectors.py). Why these
choices (epochs, dropout, the last sentences, the PPMI start), measured on folds 0-3:
bench/results/polarity.md.
"""

from jaxdl.configs import base_config


def get_config():
    # The han model and classify_documents task defaults (jaxdl/models/han.py,
    # jaxdl/tasks/classify_documents.py) are this experiment's: GRU 32 per direction,
    # embeddings 48 started from PPMI-SVD vectors, dropout 0.5, word dropout 0.3.
    config = base_config(model="han", task="classify_documents")
    config.data.update(name="review_polarity", batch_size=32, eval_batch_size=200)
    config.data.fold = 0  # test fold: reviews cv{fold}xx
    config.data.max_sentences = 36  # 80% of reviews have fewer
    config.data.max_words = 36  # 85% of sentences have fewer
    config.data.min_count = 2  # in the training folds; rarer words -> OOV
    config.data.keep_sentences = "last"  # of longer reviews (or "first")
    config.optimizer.update(
        name="adamw",
        learning_rate=3e-3,
        weight_decay=0.01,
        schedule="warmup_cosine",
        warmup_fraction=0.05,
        final_lr_fraction=0.05,
        clip="global_norm",
        clip_norm=5.0,
    )
    config.train.update(
        num_epochs=6, log_every=28, eval_every=0, checkpoint_every=0, keep_checkpoints=1
    )
    return config
