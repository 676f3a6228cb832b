"""The base of every config model, and the one place for reading TOML, config errors and config hashes.

Kept apart from config.py (which gathers every stage's model) so area config modules and the teacher
layer can use it without import cycles.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """Unknown keys are rejected, values are validated on assignment, and no type is coerced.

    Why: a typo that silently falls back to a default is the most expensive bug a days-long data
    run can have; so is ``files_per_shard = true`` read as 1. Strict mode still takes an int for a
    float field, and TOML gives no other number forms.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file, the key and the reason."""


# No config of this project nests more than a few levels; anything deeper is a mistake or an attack, and
# values nested near Python's recursion limit crash the parser, the validator or repr() with a traceback.
MAX_TOML_DEPTH = 32


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing, malformed or absurdly nested file is a ConfigError naming it."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except RecursionError:  # tomllib parses nested arrays / inline tables recursively
        raise ConfigError(f"{path}: a value is nested too deeply (more than {MAX_TOML_DEPTH} levels "
                          "of arrays or tables)") from None
    deep = _deeper_than(data, MAX_TOML_DEPTH)
    if deep is not None:
        raise ConfigError(f"{path}: {deep}: nested too deeply (more than {MAX_TOML_DEPTH} levels of arrays "
                          "or tables)")
    return data


def _deeper_than(data: Any, limit: int) -> str | None:
    """The key path of the first value nested more than ``limit`` levels, or None (walked without recursion)."""
    stack: list[tuple[Any, list[str]]] = [(data, [])]
    while stack:
        value, where = stack.pop()
        if len(where) > limit:
            return ".".join(where[: limit + 1]) + "..."
        if isinstance(value, dict):
            stack.extend((v, [*where, str(k)]) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, [*where, str(i)]) for i, v in enumerate(value))
    return None


def format_validation_error(err: ValidationError, source: str, prefix: str = "") -> str:
    """One line per problem: ``FILE: key.path: reason (got VALUE)``."""
    lines = []
    for e in err.errors():
        key = ".".join([p for p in [prefix] if p] + [str(p) for p in e["loc"]]) or "<root>"
        reason = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        got = e.get("input")
        shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
        lines.append(f"{source}: {key}: {reason}{shown}")
    return "\n".join(lines)


# Marks a field added after runs were made: while it holds its default it is left out of stage hashes,
# so upgrading textbooklm does not re-run finished stages whose behaviour the new field leaves alone.
# ``Field(..., json_schema_extra=ADDED_LATER)``.
ADDED_LATER = {"added_later": True}
# Marks a field that decides where or how fast work runs, never what it writes (where a synth stage runs its
# checks): left out of stage hashes at any value, so changing it does not re-run a finished stage.
NOT_HASHED = {"not_hashed": True}


def hash_view(model: BaseModel) -> dict[str, Any]:
    """``model.model_dump(mode="json")`` less NOT_HASHED fields and ADDED_LATER ones at their default (nested
    models too)."""
    data = model.model_dump(mode="json")
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("not_hashed") or (extra.get("added_later")
                                       and value == info.get_default(call_default_factory=True)):
            data.pop(name, None)
        elif isinstance(value, BaseModel):
            data[name] = hash_view(value)
    return data


def config_hash(section: BaseModel | dict | None, *upstream: str) -> str:
    """Stable hash of a stage's config plus the hashes of the stages it reads from.

    Chaining the upstream hashes means changing one stage's config re-runs it and every stage after.
    """
    data = hash_view(section) if isinstance(section, BaseModel) else section
    blob = json.dumps({"config": data, "upstream": list(upstream)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
