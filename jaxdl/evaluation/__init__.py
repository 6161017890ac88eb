"""Judging trained models: the Fréchet distance (frechet.py), the GAN judge
(gan_judge.py: a classifier run scores a generator run), cross-validation reports
(crossval.py) and the bag-of-words baseline for documents (bow.py)."""
