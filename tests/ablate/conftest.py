"""A small finished run for the ablation tests: real stdlib code as corpus/filter, a few textbook-like
documents, verified exercises, and a BPE tokenizer trained on them (what the pipeline leaves on disk)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pyarrow as pa
import pytest

from textbooklm.model.tokenizer import train_bpe
from textbooklm.store import write_dataset


def _stdlib(n: int) -> list[str]:
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:n]
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]


def exercise(k: int) -> dict[str, str]:
    name = f"add_{k}"
    return {"id": f"ex{k}", "prompt": f'def {name}(x):\n    """Return x plus {k}."""\n',
            "completion": f"    return x + {k}\n", "entry_point": name,
            "test": f"def check(candidate):\n    assert candidate(1) == {1 + k}\n    assert candidate(-{k}) == 0\n"}


def make_run(root: Path, exercises: int = 24) -> Path:
    texts = _stdlib(60)
    write_dataset(root / "corpus", [{"id": str(i), "text": t} for i, t in enumerate(texts)], stage="corpus")
    # "Filtered": the files that open with a module docstring (a crude stand-in for the classifier).
    kept = [t for t in texts if t.lstrip().startswith(('"""', "'''", "r\"\"\""))]
    write_dataset(root / "filter", [{"id": str(i), "text": t} for i, t in enumerate(kept)], stage="filter")
    books = [f"# Lesson {i}: loops\n\nA for loop repeats a block for each item.\n\n```python\n"
             f"total = 0\nfor n in range({i + 3}):\n    total += n\nprint(total)\n```\n" for i in range(30)]
    write_dataset(root / "textbooks", [{"id": str(i), "text": t} for i, t in enumerate(books)], stage="textbooks")
    rows = [{**exercise(k), "text": exercise(k)["prompt"] + exercise(k)["completion"]} for k in range(exercises)]
    schema = pa.schema([(c, pa.string()) for c in ("id", "prompt", "completion", "entry_point", "test", "text")])
    write_dataset(root / "exercises", rows, stage="exercises", schema=schema)
    (root / "tokenizer").mkdir()
    train_bpe(kept + books + [r["text"] for r in rows], 400).save(root / "tokenizer" / "tokenizer.json")
    return root


@pytest.fixture(scope="session")
def run_maker():
    """`make_run` as a fixture: `from conftest import` would pick whichever folder's conftest.py
    pytest put on sys.path first."""
    return make_run


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("ablate_run"))
