"""The test calls the program across a process boundary: arguments and results travel as data.

Why: when the test ran in the program's interpreter, a wrong solution could walk the stack to the
harness, take its nonce and saved ``os.write`` and report ``passed``; it could also read the
hidden test before it ran. Now the program's process (uid P) never holds the test; the test's
process (another uid, non-dumpable) holds a proxy for each of the program's names and calls
through a pair of pipes. Whatever the program sends back is decoded by wire.py into plain data or a
proxy, so the worst a program can do is answer wrongly.

Protocol: length-prefixed JSON frames. A request has ``op``; a reply has ``r`` (the result) or ``x``
(an exception). Either side may make requests while waiting for a reply (the program calling a
function the test passed it), so both sides are the same :class:`Endpoint`, with a policy:

- the test may do anything with the program's objects (call, get/set attributes, operators);
- the program may call the test's functions and use the test's other objects (a doctest's
  ``io.BytesIO``, a tree of the test's ``Node``s) only through public attributes and operators: no
  name starting with ``_``, nothing of a module, class, function, frame, code object or generator,
  no setting or deleting (a function's ``__globals__`` or a generator's ``gi_frame.f_globals``
  would lead to the test's verdict pipe).

Values outside the safe set (wire.py) pass by handle: a program's class instance, a generator,
a Decimal stay in the program's process and the test gets a :class:`Remote`: its attributes,
calls and operators (``len``, ``str``, ``iter``, ``+``, ``float()``...) are evaluated there and
come back as data. Only the verdict-making ones are refused: ``==``, ``<`` etc., truth value,
``hash`` and ``in`` on a handle raise TypeError ("not data"), because the program would decide
them (the ``__eq__`` that always says yes); a test compares what the program returns as data.
List, dict
and set arguments mutated in place by the program are copied back into the test's objects after
the call.

Exceptions cross by builtin type: the receiver raises the first builtin class in the exception's
MRO (a program's ``class E(ValueError)`` arrives as ValueError) with the message, and keeps the
program's one-line description of where it happened (``remote_where``).
"""

from __future__ import annotations

import builtins
import io
import json
import operator
import os
import signal
import struct
import sys
import traceback
import types
from typing import Any

from textbooklm.sandbox import wire

_LEN = struct.Struct(">I")
# Bound now, at import (before any program runs): a program that replaces os.write or json.dumps in
# its own process still gets its answers through (or, if it patches these too, only loses its own run).
_write, _read, _dumps, _loads = os.write, os.read, json.dumps, json.loads
MAX_FRAME = 256 << 20  # a reply larger than this is a protocol error (the memory limit binds first)


class ChannelClosed(BaseException):
    """The other process closed its end (exited, crashed or was killed). A BaseException, so a test's
    ``except Exception`` does not take the program's death for an exception it expected."""


class ProtocolError(BaseException):
    """The other side sent something that is not a frame of this protocol (a BaseException: see above)."""


class CallInterrupted(BaseException):
    """Raised inside the program when the test's own timer for this call ran out (see Endpoint.call)."""


def describe(exc: BaseException, tb) -> str:
    """One line: exception type and message, and the failing source line (the assertion)."""
    where = ""
    for frame in reversed(traceback.extract_tb(tb)):
        if frame.filename in ("<program>", "<test>"):
            line = (frame.line or "").strip()
            where = f" at {frame.filename[1:-1]} line {frame.lineno}: {line}" if line else ""
            break
    message = str(exc)
    head = type(exc).__name__ + (f": {message}" if message else "")
    return (head + where)[:2000]


def exception_data(exc: BaseException) -> dict[str, Any]:
    """An exception as data: the builtin classes in its MRO, message, description, traceback text."""
    names = [c.__name__ for c in type(exc).__mro__
             if getattr(builtins, c.__name__, None) is c and issubclass(c, BaseException)]
    try:
        message = str(exc)[:4000]
        where = describe(exc, exc.__traceback__)
        tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
    except BaseException:  # a hostile __str__
        message, where, tb_text = "(unprintable)", type(exc).__name__, ""
    return {"types": names or ["BaseException"], "msg": message, "where": where, "tb": tb_text}


def rebuild_exception(data: Any) -> BaseException:
    """The exception ``exception_data`` described, as the nearest builtin class (never a program's)."""
    if not isinstance(data, dict) or not isinstance(data.get("types"), list):
        return ProtocolError("malformed exception from the other process")
    message = str(data.get("msg", ""))
    exc: BaseException | None = None
    for name in data["types"]:
        cls = getattr(builtins, str(name), None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            try:
                exc = cls(message) if message else cls()
                break
            except Exception:  # e.g. UnicodeDecodeError wants five arguments
                continue
    if exc is None:
        exc = Exception(message)
    exc.remote_where = str(data.get("where", ""))  # type: ignore[attr-defined]
    exc.remote_traceback = str(data.get("tb", ""))  # type: ignore[attr-defined]
    return exc


# What the test may apply to a program's object: each runs in the program's process.
_UNARY = {"__len__": len, "__str__": str, "__repr__": repr, "__hash__": hash, "__bool__": bool, "__iter__": iter,
          "__next__": next, "__reversed__": reversed, "__int__": int, "__float__": float, "__complex__": complex,
          "__index__": operator.index, "__abs__": abs, "__neg__": operator.neg, "__pos__": operator.pos,
          "__invert__": operator.invert, "__bytes__": bytes}
_BINARY = {"__eq__": operator.eq, "__ne__": operator.ne, "__lt__": operator.lt, "__le__": operator.le,
           "__gt__": operator.gt, "__ge__": operator.ge, "__getitem__": operator.getitem,
           "__delitem__": operator.delitem, "__contains__": operator.contains, "__format__": format,
           "__add__": operator.add, "__sub__": operator.sub, "__mul__": operator.mul,
           "__truediv__": operator.truediv, "__floordiv__": operator.floordiv, "__mod__": operator.mod,
           "__pow__": operator.pow, "__divmod__": divmod, "__lshift__": operator.lshift,
           "__rshift__": operator.rshift, "__and__": operator.and_, "__or__": operator.or_,
           "__xor__": operator.xor, "__matmul__": operator.matmul}
_REFLECTED = {f"__r{name[2:]}": func for name, func in _BINARY.items()
              if name[2:-2] in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "divmod", "lshift",
                                "rshift", "and", "or", "xor", "matmul")}
_OTHER = {"__setitem__", "__round__", "__enter__", "__exit__"}
_LOCAL = ("_Remote__endpoint", "_Remote__handle", "__class__")


class Remote:
    """A proxy for an object in the other process; every use is a request answered there."""

    __slots__ = ("__endpoint", "__handle")

    def __init__(self, endpoint: Endpoint, handle: int) -> None:
        object.__setattr__(self, "_Remote__endpoint", endpoint)
        object.__setattr__(self, "_Remote__handle", handle)

    def __getattribute__(self, name: str) -> Any:
        if name in _LOCAL:
            return object.__getattribute__(self, name)
        return object.__getattribute__(self, "_Remote__endpoint").request(
            {"op": "get", "h": object.__getattribute__(self, "_Remote__handle"), "n": name})

    def __setattr__(self, name: str, value: Any) -> None:
        ep = object.__getattribute__(self, "_Remote__endpoint")
        ep.request({"op": "set", "h": object.__getattribute__(self, "_Remote__handle"), "n": name,
                    "v": ep.encode(value)})

    def __delattr__(self, name: str) -> None:
        object.__getattribute__(self, "_Remote__endpoint").request(
            {"op": "del", "h": object.__getattribute__(self, "_Remote__handle"), "n": name})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return object.__getattribute__(self, "_Remote__endpoint").call(
            object.__getattribute__(self, "_Remote__handle"), args, kwargs)

    def _apply(self, name: str, *args: Any) -> Any:
        ep = object.__getattribute__(self, "_Remote__endpoint")
        return ep.request({"op": "op", "h": object.__getattribute__(self, "_Remote__handle"), "n": name,
                           "a": [ep.encode(a) for a in args]})


def _forwarder(name: str):
    def method(self, *args):
        return Remote._apply(self, name, *args)

    method.__name__ = name
    return method


# Never answered by the program: each would let its object decide an assertion.
_REFUSED = ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__hash__", "__contains__")


def _refuser(name: str):
    def method(self, *args):
        kind = Remote._apply(self, "__repr__")
        raise TypeError(f"{name} on a value the program did not return as data ({str(kind)[:80]}): "
                        "only data (None, bool, int, float, complex, str, bytes, list, tuple, dict, set) "
                        "is compared in the test")

    method.__name__ = name
    return method


for _name in (*_UNARY, *_BINARY, *_REFLECTED, *_OTHER):
    setattr(Remote, _name, _refuser(_name) if _name in _REFUSED else _forwarder(_name))


def _apply_op(obj: Any, name: str, args: list[Any]) -> Any:
    if name in _UNARY:
        return _UNARY[name](obj)
    if name in _BINARY:
        return _BINARY[name](obj, *args)
    if name in _REFLECTED:
        return _REFLECTED[name](args[0], obj)
    if name == "__setitem__":
        obj[args[0]] = args[1]
        return None
    if name == "__round__":
        return round(obj, *args)
    if name in ("__enter__", "__exit__"):
        return getattr(obj, name)(*args)
    raise TypeError(f"operator {name} is not forwarded")


class Endpoint:
    """One side of the channel. ``full_access``: the other side may get/set attributes and apply
    operators on our objects (the program's side); otherwise it may only call them (the test's)."""

    def __init__(self, read_fd: int, write_fd: int, full_access: bool, capture_cap: int = 1 << 20) -> None:
        self.read_fd, self.write_fd = read_fd, write_fd
        self.full_access = full_access
        self.capture_cap = capture_cap
        self.buf = bytearray()
        self.exports: list[Any] = []
        self.export_ids: dict[int, int] = {}
        self.stale = 0  # replies still owed to requests whose wait an exception (a test's alarm) cut short
        self.broken = ""  # why the channel is unusable (then every later use raises)
        self.garbled = False  # the other side sent bytes that are not this protocol

    # --- framing
    def send(self, message: dict[str, Any]) -> None:
        if self.broken:
            raise ChannelClosed(self.broken)
        body = _dumps(message, separators=(",", ":")).encode("ascii")
        data = _LEN.pack(len(body)) + body
        sent = 0
        try:
            while sent < len(data):
                sent += _write(self.write_fd, data[sent:])
        except BrokenPipeError:
            self.broken = "the other process closed the channel"
            raise ChannelClosed(self.broken) from None
        except BaseException:
            if sent:  # half a frame went out: nothing after it can be parsed
                self.broken = "a frame was cut in half"
            raise

    def recv(self) -> dict[str, Any]:
        if self.broken:
            raise ChannelClosed(self.broken)
        while True:
            if len(self.buf) >= _LEN.size:
                size = _LEN.unpack_from(self.buf)[0]
                if size > MAX_FRAME:
                    self.broken = f"a frame of {size} bytes"
                    self.garbled = True
                    raise ProtocolError(self.broken)
                if len(self.buf) >= _LEN.size + size:
                    body = bytes(self.buf[_LEN.size:_LEN.size + size])
                    del self.buf[:_LEN.size + size]
                    try:
                        message = _loads(body)
                    except (ValueError, RecursionError):
                        self.broken, self.garbled = "a frame that is not JSON", True
                        raise ProtocolError(self.broken) from None
                    if not isinstance(message, dict):
                        self.broken, self.garbled = "a frame that is not an object", True
                        raise ProtocolError(self.broken)
                    return message
            chunk = _read(self.read_fd, 1 << 16)
            if not chunk:
                self.broken = "the other process closed the channel"
                raise ChannelClosed(self.broken)
            self.buf += chunk

    # --- values
    def export(self, value: Any) -> dict[str, int]:
        if isinstance(value, Remote):  # the other side's own object, going home
            return {"y": object.__getattribute__(value, "_Remote__handle")}
        key = id(value)
        index = self.export_ids.get(key)
        if index is None or self.exports[index] is not value:
            index = len(self.exports)
            self.exports.append(value)  # kept alive for the program's life: ids stay valid
            self.export_ids[key] = index
        return {"h": index}

    def resolve(self, tag: str, index: int) -> Any:
        if tag == "h":
            return Remote(self, index)
        if 0 <= index < len(self.exports):
            return self.exports[index]
        raise ProtocolError(f"no object {index} here")

    def encode(self, value: Any) -> Any:
        return wire.encode(value, self.export)

    def decode(self, data: Any) -> Any:
        return wire.decode(data, self.resolve)

    # --- requests
    def request(self, message: dict[str, Any]) -> Any:
        """Send a request and serve the other side's requests until its reply; return the result."""
        return self._exchange(message).get("_decoded")

    def _exchange(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send ``message``, serve the other side until its reply, re-raise its exception; the reply."""
        self._drain_stale()
        self.send(message)
        try:
            reply = self._until_reply()
        except (ChannelClosed, ProtocolError):
            raise
        except BaseException:  # e.g. the test's SIGALRM handler raised while we waited
            self.stale += 1
            raise
        if "x" in reply:
            raise rebuild_exception(reply["x"])
        return reply

    def call(self, handle: int, args: tuple, kwargs: dict[str, Any]) -> Any:
        """Call the other side's object ``handle``; list/dict/set arguments it mutates are copied back."""
        mutable = [i for i, a in enumerate(args) if type(a) in (list, dict, set)]
        kw_mutable = [k for k, v in kwargs.items() if type(v) in (list, dict, set)]
        message: dict[str, Any] = {"op": "call", "h": handle, "a": [self.encode(a) for a in args],
                                   "k": {str(k): self.encode(v) for k, v in kwargs.items()},
                                   "m": mutable, "km": kw_mutable}
        if not self.full_access:  # the test: the program honours the test's own timer for this call
            left = signal.getitimer(signal.ITIMER_REAL)[0]
            if left > 0:
                message["alarm"] = left
        reply = self._exchange(message)
        back = reply.get("back") or {}
        for i, new in zip(mutable, back.get("a") or [], strict=False):
            _copy_into(args[i], self.decode(new))
        for k in kw_mutable:
            if k in (back.get("k") or {}):
                _copy_into(kwargs[k], self.decode(back["k"][k]))
        return reply.get("_decoded")

    def _until_reply(self) -> dict[str, Any]:
        while True:
            message = self.recv()
            if "op" in message:
                self.serve_one(message)
                continue
            if "o" in message:  # what the program printed while answering: print it here, in order
                try:
                    sys.stdout.write(str(message["o"]))
                except Exception:
                    pass
            if "r" in message:
                try:
                    message["_decoded"] = self.decode(message["r"])
                except (ValueError, TypeError, RecursionError, ProtocolError) as exc:
                    raise self._garbled(f"a reply that is not data ({exc})") from None
            elif "x" not in message or not isinstance(message["x"], dict) \
                    or not isinstance(message["x"].get("types"), list):
                raise self._garbled("a reply with neither a result nor an exception")
            return message

    def _garbled(self, why: str) -> ProtocolError:
        """The other side broke the protocol: the channel is done, and the run can never pass."""
        self.broken, self.garbled = why, True
        return ProtocolError(why)

    def _drain_stale(self) -> None:
        while self.stale:
            message = self.recv()
            if "op" in message:  # a cancelled call still running on the other side: refuse its callbacks
                self.send({"x": exception_data(RuntimeError("the caller gave up on this call"))})
            else:
                self.stale -= 1

    def serve_one(self, message: dict[str, Any]) -> None:
        """Answer one request from the other side."""
        alarm = 0.0
        old_handler = None
        capture = _Capture(self.capture_cap) if self.full_access else None
        real_stdout = sys.stdout
        if capture is not None:  # a test that redirects stdout sees what the call printed
            _flush_std()
            sys.stdout = capture
        try:
            op = message.get("op")
            obj = self.resolve("y", int(message.get("h", -1)))
            if not self.full_access:
                _check_program_use(obj, op, str(message.get("n", "")))
            back: dict[str, Any] | None = None
            if op == "call":
                args = [self.decode(a) for a in message.get("a") or []]
                kwargs = {str(k): self.decode(v) for k, v in (message.get("k") or {}).items()}
                alarm = float(message.get("alarm") or 0) if self.full_access else 0.0
                if alarm > 0:  # a little later than the test's own, which decides
                    old_handler = signal.signal(signal.SIGALRM, _interrupt)
                    signal.setitimer(signal.ITIMER_REAL, alarm + 0.05)
                result = obj(*args, **kwargs)
                if alarm > 0:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    alarm = 0.0
                back = {"a": [self.encode(args[i]) for i in message.get("m") or [] if 0 <= i < len(args)],
                        "k": {k: self.encode(kwargs[k]) for k in message.get("km") or [] if k in kwargs}}
            elif op == "get":
                result = getattr(obj, str(message.get("n")))
            elif op == "set":
                setattr(obj, str(message.get("n")), self.decode(message.get("v")))
                result = None
            elif op == "del":
                delattr(obj, str(message.get("n")))
                result = None
            elif op == "op":
                result = _apply_op(obj, str(message.get("n")), [self.decode(a) for a in message.get("a") or []])
            else:
                raise ProtocolError(f"unknown request {op!r}")
            reply: dict[str, Any] = {"r": self.encode(result)}
            if back is not None and (back["a"] or back["k"]):
                reply["back"] = back
        except (ChannelClosed, ProtocolError):
            raise
        except BaseException as exc:
            if alarm > 0:
                signal.setitimer(signal.ITIMER_REAL, 0)
            reply = {"x": exception_data(exc)}
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGALRM, old_handler)
            if capture is not None:
                sys.stdout = real_stdout
        _flush_std()
        if capture is not None and capture.parts:
            reply["o"] = "".join(capture.parts)
        self.send(reply)


class _Capture(io.TextIOBase):
    """sys.stdout of the program while it answers a request; the reply carries it to the test."""

    def __init__(self, cap: int) -> None:
        self.parts: list[str] = []
        self.left = cap

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self.left > 0:
            self.parts.append(text[:self.left])
            self.left -= len(text)
        return len(text)


# What the program may never look into, of the test's objects (each leads to the test's globals).
_OPAQUE = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
           types.FrameType, types.CodeType, types.TracebackType, types.GeneratorType, types.CoroutineType,
           types.AsyncGeneratorType, types.CellType)
_PRIVATE_ATTRS = {"gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "f_globals", "f_locals",
                  "f_back", "f_builtins", "f_code", "tb_frame", "tb_next"}


def _check_program_use(obj: Any, op: str, name: str) -> None:
    """Refuse what the program may not do with one of the test's objects (see the module docstring)."""
    if op == "call":
        return
    if op == "op" and name not in ("__setitem__", "__delitem__", "__enter__", "__exit__"):
        return
    if op == "get" and not name.startswith("_") and name not in _PRIVATE_ATTRS and not isinstance(obj, _OPAQUE):
        return
    raise TypeError(f"the program may not {op} {name!r} on the test's {type(obj).__name__}")


def _interrupt(*_args: Any) -> None:
    raise CallInterrupted()


def _flush_std() -> None:
    """Flush the program's buffered prints before replying, so stdout keeps the calls' order."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def _copy_into(target: Any, new: Any) -> None:
    """Copy a mutated argument back into the caller's object of the same type."""
    if type(target) is not type(new):
        return
    if type(target) is list:
        target[:] = new
    else:
        target.clear()
        target.update(new)
