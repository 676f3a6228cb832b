"""Values as data between the program's process and the test's: a safe serializer.

Why: the test must run out of the program's reach (call_proxy.py), so every argument and result
crosses a process boundary. Pickle from the program would run the program's code in the test's
process (``__reduce__``); this format can only ever produce the types listed here, so decoding what
a hostile program sent yields plain values and nothing else.

Encoded form (JSON after encoding): None, bool, int, str as themselves; a float as itself (JSON
allows NaN/Infinity here); a list as a JSON array; everything else a one-key object::

    {"t": [..]} tuple   {"d": [[k, v], ..]} dict   {"s": [..]} set   {"f": [..]} frozenset
    {"b": "hex"} bytes  {"c": [re, im]} complex    {"r": [start, stop, step]} range
    {"h": n} the sender's object n (it stays in the sender's process; the receiver gets a proxy)
    {"y": n} the receiver's own object n, sent back (the receiver gets the object itself)

A subclass of a safe type (a Counter, an OrderedDict, a namedtuple, an IntEnum, a numpy float64, or
a program's ``class Always(int)`` with an ``__eq__`` that says yes) is sent as its base type's plain
value, read through the base type's own methods, so no method the subclass overrides runs and what
arrives is ordinary data. Anything else, and a container nested deeper than MAX_DEPTH, is passed by
handle when the sender allows it (``export``), else refused with :class:`NotData`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_DEPTH = 200  # nesting deeper than this is not data (json would also overflow the C stack)


class NotData(TypeError):
    """A value of a type outside the safe set, where only data may pass."""


_SCALARS = (type(None), bool, int, str, float)


def encode(value: Any, export: Callable[[Any], dict] | None = None, depth: int = 0) -> Any:
    """``value`` as JSON-ready data; an object outside the safe set becomes ``export(obj)`` (a handle)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if depth < MAX_DEPTH:
        if kind is list:
            return [encode(v, export, depth + 1) for v in value]
        if kind is tuple:
            return {"t": [encode(v, export, depth + 1) for v in value]}
        if kind is dict:
            return {"d": [[encode(k, export, depth + 1), encode(v, export, depth + 1)] for k, v in value.items()]}
        if kind is set:
            return {"s": [encode(v, export, depth + 1) for v in value]}
        if kind is frozenset:
            return {"f": [encode(v, export, depth + 1) for v in value]}
        if kind is bytes:
            return {"b": value.hex()}
        if kind is complex:
            return {"c": [value.real, value.imag]}
        if kind is range:
            return {"r": [value.start, value.stop, value.step]}
        base = _base_value(value)
        if base is not None:
            return encode(base, export, depth + 1)
    if export is None:
        raise NotData(f"a value of type {kind.__name__} is not data")
    return export(value)


def _base_value(value: Any) -> Any:
    """The plain value of an instance of a subclass of a safe type (None when it is not one)."""
    for base, plain in _BASES:
        if isinstance(value, base):
            try:
                return plain(value)
            except Exception:
                return None
    return None


_BASES: tuple[tuple[type, Any], ...] = (
    (int, int.__int__), (float, float.__float__), (str, str.__str__), (complex, complex.__complex__),
    (bytes, lambda v: bytes(memoryview(v))), (list, list.copy), (tuple, lambda v: tuple.__getitem__(v, slice(None))),
    (dict, dict.copy), (set, set.copy), (frozenset, lambda v: frozenset(set.union(set(), v))),
)


def decode(data: Any, resolve: Callable[[str, int], Any] | None = None, depth: int = 0) -> Any:
    """The value ``data`` encodes; handles through ``resolve``. Raises ValueError on anything malformed."""
    kind = type(data)
    if kind in _SCALARS:
        return data
    if depth >= MAX_DEPTH + 2:
        raise ValueError("data nested too deep")
    if kind is list:
        return [decode(v, resolve, depth + 1) for v in data]
    if kind is not dict or len(data) != 1:
        raise ValueError(f"malformed data: {type(data).__name__}")
    (tag, body), = data.items()
    if tag in ("h", "y"):
        if resolve is None or type(body) is not int:
            raise ValueError("a handle where none may be")
        return resolve(tag, body)
    if tag == "b" and type(body) is str:
        return bytes.fromhex(body)
    if tag == "c" and type(body) is list and len(body) == 2 and all(type(x) in (int, float) for x in body):
        return complex(body[0], body[1])
    if tag == "r" and type(body) is list and len(body) == 3 and all(type(x) is int for x in body):
        return range(*body)
    if type(body) is not list:
        raise ValueError(f"malformed data under {tag!r}")
    if tag == "t":
        return tuple(decode(v, resolve, depth + 1) for v in body)
    if tag == "s":
        return {decode(v, resolve, depth + 1) for v in body}  # TypeError on an unhashable item
    if tag == "f":
        return frozenset(decode(v, resolve, depth + 1) for v in body)
    if tag == "d":
        out = {}
        for pair in body:
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("malformed dict item")
            out[decode(pair[0], resolve, depth + 1)] = decode(pair[1], resolve, depth + 1)
        return out
    raise ValueError(f"unknown data tag {tag!r}")
