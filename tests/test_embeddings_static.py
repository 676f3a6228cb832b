"""The static (model2vec) embedder distilled from the bundled MiniLM."""

import subprocess
import sys

import numpy as np
import pytest

from textbooklm.embeddings import StaticEmbedder, load_embedder

CODE = [
    "def add(a, b):\n    return a + b\n",
    "def add(x, y):\n    return x + y\n",
    "class Stack:\n    def push(self, item):\n        self.items.append(item)\n",
]


def test_static_path_that_is_not_a_model2vec_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a model2vec folder"):
        StaticEmbedder(tmp_path)


@pytest.mark.slow
def test_static_distils_offline_once_and_embeds():
    """In a fresh interpreter with HF_HUB_OFFLINE=1: the cached distillation loads (first use builds it, 1-3
    minutes), 256-dim, unit rows, and near-identical code is closer than unrelated code."""
    code = (
        "import os, time; os.environ['HF_HUB_OFFLINE']='1';"
        "from textbooklm.embeddings import load_embedder, static_minilm_folder;"
        "static_minilm_folder(); t = time.perf_counter();"
        f"v = load_embedder('static').embed({CODE!r}); load = time.perf_counter() - t;"
        "print(v.shape[1], round(float(abs(1 - (v * v).sum(1)).max()), 6), "
        "round(float((v[0]@v[1])-(v[0]@v[2])), 3), round(load, 2))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    dim, err, gap, load = out.stdout.split()
    assert int(dim) == 256 and float(err) < 1e-5 and float(gap) > 0.2
    assert float(load) < 20  # loaded from the cache, not distilled again


@pytest.mark.slow
def test_static_vector_is_the_normalized_mean_of_its_token_rows():
    """What the embedder computes, written out: token ids -> rows -> mean -> unit length; order-free batches."""
    emb = load_embedder("static")
    assert emb.name == "static" and load_embedder("static") is emb
    texts = [*CODE, "", "x " * 2000]
    v = emb.embed(texts)
    assert v.shape == (len(texts), 256) and v.dtype == np.float32
    table = np.asarray(emb.model.embedding, dtype=np.float32)
    for text, row in zip(texts[:3], v[:3], strict=True):
        ids = emb.model.tokenize([text])[0][: emb.max_tokens]
        mean = table[ids].mean(axis=0)
        assert np.allclose(row, mean / np.linalg.norm(mean), atol=2e-3)  # float16 table
    assert not v[3].any()  # an empty text has no tokens: the zero vector, not NaN
    assert np.allclose(np.concatenate([emb.embed([t]) for t in texts]), v, atol=1e-6)
    assert emb.embed([]).shape == (0, 256)
