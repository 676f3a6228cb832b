import subprocess
import sys

import numpy as np
import pytest

from textbooklm.embeddings import HashingEmbedder, load_embedder

CODE = [
    "def add(a, b):\n    return a + b\n",
    "def add(x, y):\n    return x + y\n",
    "class Stack:\n    def push(self, item):\n        self.items.append(item)\n",
]


def test_hashing_is_normalized_deterministic_and_sensible():
    emb = HashingEmbedder(512)
    v = emb.embed(CODE)
    assert v.shape == (3, 512) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert np.array_equal(v, HashingEmbedder(512).embed(CODE))
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2]


@pytest.mark.slow
def test_minilm_loads_offline_and_embeds():
    """The bundled model loads with HF_HUB_OFFLINE=1 in a fresh interpreter (no hub access)."""
    code = (
        "import os; os.environ['HF_HUB_OFFLINE']='1';"
        "from textbooklm.embeddings import load_embedder;"
        "import numpy as np;"
        f"v = load_embedder('minilm').embed({CODE!r});"
        "print(v.shape[1], round(float((v[0]@v[1])-(v[0]@v[2])), 3))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    dim, gap = out.stdout.split()
    assert int(dim) == 384 and float(gap) > 0


def test_unknown_spec():
    with pytest.raises(ValueError, match="unknown embedder"):
        load_embedder("word2vec")
