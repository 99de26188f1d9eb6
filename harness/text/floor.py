"""The TF-IDF floor of a text table: what bag-of-words retrieval scores without any neural network.

scikit-learn's TfidfVectorizer with its defaults (lower-cased word tokens of 2+ characters, smoothed
idf, L2-normalised rows) is fitted on the search half's texts only and then embeds the test half, which
it never saw while fitting: words only the test half uses are left out, as for any model trained on
the search half. It has no hyperparameters searched and no seed, so it runs once.

A text with no word of the vocabulary has no TF-IDF vector; every row gets one more column, a small
constant, so such texts embed as that column alone (they retrieve one another first, then ties) and
every other ranking is unchanged (the constant adds the same amount to every dot product of
L2-normalised rows and scales every row's norm alike).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["TFIDF", "TfidfFloor"]

UNKNOWN_WEIGHT = 1e-3


class TfidfFloor:
    name = "tfidf"
    description = ("TF-IDF floor: scikit-learn's TfidfVectorizer (defaults) fitted on the search half's texts, "
                   "cosine kNN; no network, no search, no seed")

    def identity(self) -> str:
        from losses.identity import code_identity

        return code_identity(__name__, Path(__file__), None)

    def embed(self, search_half, test) -> np.ndarray:
        """The test half's TF-IDF vectors [items, vocabulary + 1], float32, from a vocabulary and idf
        fitted on `search_half`'s texts alone."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = np.asarray(search_half.texts, dtype=object)
        vectorizer = TfidfVectorizer(dtype=np.float32).fit(texts[search_half.rows])
        vectors = vectorizer.transform(np.asarray(test.texts, dtype=object)[test.rows])
        embeddings = np.zeros((vectors.shape[0], vectors.shape[1] + 1), dtype=np.float32)
        for start in range(0, vectors.shape[0], 4096):
            embeddings[start:start + 4096, :-1] = vectors[start:start + 4096].toarray()
        embeddings[:, -1] = UNKNOWN_WEIGHT
        return embeddings


TFIDF = TfidfFloor()
