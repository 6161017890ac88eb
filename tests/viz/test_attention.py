"""The attention pages: every word with its weight, escaped; unread text greyed."""

import html
import re

import numpy as np

from jaxdl.viz import attention as attention_view


def test_html_page_holds_every_word_with_its_weight_escaped():
    sentences = [["a", "<b>", "film"], ["great", '"fun"', "&", "cut"], ["not", "read"]]
    word_attention = np.array([[0.2, 0.5, 0.3], [0.1, 0.6, 0.3]])
    sentence_attention = np.array([0.25, 0.75])
    page = attention_view.document_page(
        "cv000_1", sentences, word_attention, sentence_attention, ["neg", "pos"], 1, [0.1, 0.9]
    )
    read = re.findall(r'<span class="word" data-weight="([0-9.]+)"[^>]*>([^<]*)</span>', page)
    assert [html.unescape(w) for _, w in read] == ["a", "<b>", "film", "great", '"fun"', "&"]
    np.testing.assert_allclose([float(v) for v, _ in read], [0.2, 0.5, 0.3, 0.1, 0.6, 0.3])
    cut = re.findall(r'<span class="word cut"[^>]*>([^<]*)</span>', page)
    assert cut == ["cut", "not", "read"]  # past the 3 words / 2 sentences the model read
    sentence_weights = re.findall(r'<div class="sentence" data-weight="([0-9.]+)"', page)
    np.testing.assert_allclose([float(v) for v in sentence_weights], [0.25, 0.75, 0.0])
    assert "<b>" not in page.replace("<b>pos</b>", "").replace("<b>pos</b>", "")
    assert "predicted <b>pos</b> with probability 0.900" in page
    index = attention_view.index_page(
        "run <x>",
        [
            {
                "name": "cv000_1",
                "href": "cv000_1.html",
                "label": "pos",
                "predicted": "pos",
                "probability": 0.9,
            }
        ],
    )
    assert '<a href="cv000_1.html">cv000_1</a>' in index and "run &lt;x&gt;" in index


def test_html_page_of_the_last_sentences_read_greys_the_first():
    sentences = [["skipped", "intro"], ["so", "good"], ["loved", "it"]]
    page = attention_view.document_page(
        "cv000_1",
        sentences,
        np.array([[0.4, 0.6], [0.9, 0.1]]),
        np.array([0.3, 0.7]),
        ["neg", "pos"],
        1,
        [0.2, 0.8],
        first_read=1,
    )
    read = re.findall(r'<span class="word" data-weight="([0-9.]+)"[^>]*>([^<]*)</span>', page)
    assert [w for _, w in read] == ["so", "good", "loved", "it"]
    np.testing.assert_allclose([float(v) for v, _ in read], [0.4, 0.6, 0.9, 0.1])
    assert re.findall(r'<span class="word cut"[^>]*>([^<]*)</span>', page) == ["skipped", "intro"]
    sentence_weights = re.findall(r'<div class="sentence" data-weight="([0-9.]+)"', page)
    np.testing.assert_allclose([float(v) for v in sentence_weights], [0.0, 0.3, 0.7])
