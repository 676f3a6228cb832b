"""Shared test set-up: keep every hub offline and every cache inside the test's temp space."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# tests/ on the path: the test fakes (tests/fakes: the echo servers) are imported as `fakes.*`.
sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
