import subprocess
import sys

import numpy as np
import pytest

from textbooklm.embeddings import HashingEmbedder, cpu_has_native_bf16, load_embedder, resolve_precision

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


@pytest.mark.slow
def test_minilm_batches_equal_sentence_transformers_encode_and_one_at_a_time():
    """The embedder's own loop (one tokenizer call, batches sorted by token count, inference mode) computes
    what ``SentenceTransformer.encode`` does, whatever the batch and the order: same model, same numbers.
    bf16 keeps the direction of every vector (cosine >= 0.999) and is loaded as a separate model."""
    texts = [*CODE, "", "x", "def long(a):\n" + "    a = a + 1  # step\n" * 200, CODE[2] * 3]
    emb = load_embedder("minilm")
    ref = emb.model.encode(texts, batch_size=3, normalize_embeddings=True, convert_to_numpy=True)
    batched = emb.embed(texts, batch_size=3)
    assert batched.shape == (len(texts), 384) and batched.dtype == np.float32
    assert np.abs(batched - ref).max() < 1e-5
    one_by_one = np.concatenate([emb.embed([t], batch_size=1) for t in texts])
    assert np.abs(one_by_one - ref).max() < 1e-5
    assert len(emb.tokenize(texts)["input_ids"][5]) == emb.max_seq_length  # the long text is truncated
    assert emb.embed([]).shape == (0, 384)

    bf16 = load_embedder("minilm", "bf16")
    assert bf16 is not emb and bf16.name == "minilm@bf16" and emb.name == "minilm"
    low = bf16.embed(texts, batch_size=4)
    assert low.dtype == np.float32 and np.allclose(np.linalg.norm(low, axis=1), 1, atol=1e-5)
    assert (low * ref).sum(axis=1).min() > 0.999


def test_precision_resolution():
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("auto", device="cuda") == "fp32"
    with pytest.raises(ValueError, match="unknown embedding precision 'int4'"):
        resolve_precision("int4")


def test_unknown_spec():
    with pytest.raises(ValueError, match="unknown embedder"):
        load_embedder("word2vec")
