"""Fixtures for the synth tests: a real OpenAI-compatible server on 127.0.0.1 whose replies are scripted.

It is the teacher layer's echo server (request log, latency, faults) with one change: instead of
echoing, it answers each prompt with :func:`scripted_reply`, so stage tests get exercises that pass,
fail, time out or do not parse, decided by the function name in the prompt, and textbooks whose
code blocks pass or fail.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.echo_server import EchoServer, _Handler

KEY_ENV = "TEXTBOOKLM_TEST_SYNTH_KEY"
# Set at collection, before any executor pool starts: several drivers run in workers forked from the
# executor's fork server, which holds the environment it started with (as a run's workers hold the
# run's). A key set later by one test's monkeypatch did not reach a pool an earlier test had started.
os.environ.setdefault(KEY_ENV, "sk-synth-test")

GOOD = '''Here is the exercise:

```python
def {name}({params}):
    """Return the number of items (a made-up task for the test server)."""
    return len({arg})

assert {name}({example}) == len({example})
assert {name}({empty}) == 0
```
'''
WRONG = GOOD.replace("return len({arg})", "return len({arg}) + 1")
SLOW = GOOD.replace("return len({arg})", "while True:\n        pass")
NO_TESTS = GOOD.split("assert")[0] + "```\n"
# Right code, weak tests: every assert expects its argument back, so `return x` passes them all.
WEAK = '''Here is the exercise:

```python
def {name}(n):
    """Return n, capped at a thousand."""
    if n > 1000:
        return 1000
    return n

assert {name}(3) == 3
assert {name}(5) == 5
```
'''
TEXTBOOK = '''# About {topic}

Lists hold values in order. Here is an example that uses them:

```python
values = [3, 1, 2]
total = sum(values)
print(total)
```

And a second block that builds on the first:

```python
print(total * 2)
```
{extra}
That is all there is to it, and the text goes on long enough to pass the minimum length check easily.
'''
FAILING_BLOCK = "```python\nraise ValueError('broken example')\n```\n"
# Runs without error, yet runs nothing: parse_file exists nowhere and nothing calls load.
STUB_BLOCK = "```python\ndef load(path):\n    return parse_file(path)\n```\n"


def scripted_reply(prompt: str) -> str:
    """The reply for one prompt: an exercise (by the requested name's hash) or a textbook."""
    m = re.search(r"for `(\w+)\((.*?)\)`", prompt)
    if m:
        name, params = m.group(1), m.group(2)
        arg = params.split(":")[0].strip() or "x"
        example, empty = ("'abc'", "''") if "str" in params.split(",")[0] else ("[1, 2, 3]", "[]")
        kind = sum(name.encode()) % 4  # good, wrong, no tests, good (so about half pass)
        if "while_true" in prompt or name.startswith("slow_"):
            template = SLOW
        elif name.startswith("weak_"):
            template = WEAK
        else:
            template = {0: GOOD, 1: WRONG, 2: NO_TESTS, 3: GOOD}[kind]
        return template.format(name=name, params=arg, arg=arg, example=example, empty=empty)
    if "Complete this Python function" in prompt:  # another solution, for agreement
        name = re.search(r"def (\w+)\(", prompt).group(1)
        arg = re.search(r"def \w+\((\w+)", prompt).group(1)
        return f"```python\ndef {name}({arg}):\n    return len({arg})\n```\n"
    topic = re.search(r'about "?([^"\n]*)"?', prompt)
    extra = FAILING_BLOCK if "fail" in prompt.lower() else STUB_BLOCK if "(stubs)" in prompt else ""
    return TEXTBOOK.format(topic=topic.group(1) if topic else "lists", extra=extra)


class ScriptedHandler(_Handler):
    @staticmethod
    def _completion(state: Any, body: dict[str, Any], logprobs_ok: bool) -> dict[str, Any]:
        prompt = str((body.get("messages") or [{}])[-1].get("content", ""))
        text = scripted_reply(prompt)
        return {
            "id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                      "total_tokens": len(prompt.split()) + len(text.split())},
        }


@pytest.fixture
def scripted_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[EchoServer]:
    monkeypatch.setenv(KEY_ENV, "sk-synth-test")
    srv = EchoServer(latency_s=0.0)
    srv._httpd.RequestHandlerClass = ScriptedHandler
    with srv:
        yield srv


@pytest.fixture
def teacher_table():
    """``teacher_table(server, **overrides)``: a [teachers.NAME] table pointing at a test server."""
    return make_teacher_table


def make_teacher_table(server: EchoServer, **kw: Any) -> dict[str, Any]:
    base = dict(backend="openai", model="scripted", base_url=server.base_url, api_key_env=KEY_ENV, concurrency=4,
                max_retries=2, backoff_base_s=0.02, backoff_max_s=0.1, timeout_s=10.0)
    base.update(kw)
    return base
