"""The filter embeds in the precision saved with the classifier, through the same batched path."""

from __future__ import annotations

import numpy as np
import pytest

from textbooklm.embeddings import load_embedder
from textbooklm.quality.classifier import QualityClassifier
from textbooklm.quality.filter_stage import score_texts

TEXTS = [
    '"""Lesson: add two numbers."""\n\ndef add(a, b):\n    """Return a + b."""\n    return a + b\n',
    "DATA = [\n" + "    (1, 2.0, 'x'),\n" * 80 + "]\n",
    "",
    "def f(a,b):\n    q0=a*3+b\n    return q0\n",
    "class Stack:\n    def push(self, item):\n        self.items.append(item)\n" * 20,
]


@pytest.mark.slow
def test_score_texts_uses_the_classifiers_precision():
    rng = np.random.default_rng(0)
    coef = rng.normal(size=384)
    clfs = {p: QualityClassifier(kind="ridge", embedder="minilm", max_chars=600, cut=0.5, coef=coef, intercept=0.5,
                                 precision=p) for p in ("fp32", "bf16")}
    heads = [t[:600] for t in TEXTS]
    for precision, clf in clfs.items():
        want = np.clip(load_embedder("minilm", precision).embed(heads) @ coef + 0.5, 0, 1)
        # One batch for both sides: score_texts sorts the texts by length first. (In bf16 on CPUs with native
        # bf16 kernels (AVX512-BF16/AMX) a row's result depends on the batch it shares, so equal batches are
        # what makes the comparison exact; fp32 is also checked with batches of 2.)
        assert np.allclose(score_texts(clf, TEXTS, batch_size=64), want, atol=1e-6), precision
        if precision == "fp32":
            assert np.allclose(score_texts(clf, TEXTS, batch_size=2), want, atol=1e-5)
    fp32, bf16 = (score_texts(clfs[p], TEXTS, batch_size=64) for p in ("fp32", "bf16"))
    assert not np.array_equal(fp32, bf16) and np.abs(fp32 - bf16).max() < 0.05
