"""Review sets for the document classifier: review polarity v2.0 from its tarball (fold
`data.fold` held out), and TFDS `imdb_reviews` / `yelp_polarity_reviews` (downloaded and
prepared by TFDS if needed). Documents become (max_sentences, max_words) token ids."""

from jaxdl.data import documents, inputs, sources


def read_polarity(dcfg) -> tuple:
    root = sources.local_data_dir(dcfg.data_dir)
    candidates = (root / documents.POLARITY_ARCHIVE, root / documents.POLARITY_ARCHIVE.name)
    archive = next((p for p in candidates if p.is_file()), candidates[0])
    train, test = documents.split_folds(documents.read_polarity(archive), dcfg.fold)
    info = {"origin": f"local copy {archive}", "fold": dcfg.fold}
    return train, test, documents.POLARITY_CLASSES, info


def read_tfds_reviews(dcfg) -> tuple:
    splits = {}
    for split in (dcfg.train_split, dcfg.eval_split):
        texts, labels, class_names, origin = sources.load_reviews_tfds(
            dcfg.name, split, dcfg.data_dir
        )
        splits[split] = documents.documents_from_text(texts, labels, f"{dcfg.name}_{split}")
    info = {"origin": origin, "fold": None}
    return splits[dcfg.train_split], splits[dcfg.eval_split], class_names, info


inputs.document_source("review_polarity", read_polarity, data_dir="", fold=0)
for _name in ("imdb_reviews", "yelp_polarity_reviews"):
    inputs.document_source(
        _name, read_tfds_reviews, data_dir="", train_split="train", eval_split="test"
    )
