"""A teacher reply holding a lone surrogate (``"\\ud800"`` in the server's JSON) is cached, not a crash.

A real HTTP server on 127.0.0.1 sends a chat completion whose content has an unpaired escape, as a
server that cuts a UTF-16 pair in half would. SQLite refuses such strings, so the request cache must
store them ASCII-escaped and give back the very same text.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from textbooklm.teacher import Request, TeacherConfig, build_teacher
from textbooklm.teacher.types import request_key


class _Handler(BaseHTTPRequestHandler):
    hits = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).hits += 1
        body = (b'{"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [{"index": 0, '
                b'"message": {"role": "assistant", "content": "def f():\\n    return \\"half a pair: \\ud83d\\""}, '
                b'"finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}')
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def surrogate_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_reply_with_a_lone_surrogate_is_cached_and_read_back(surrogate_server, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTBOOKLM_TEST_TEACHER_KEY", "sk-test-unicode")
    cfg = TeacherConfig(backend="openai", model="m", base_url=surrogate_server,
                        api_key_env="TEXTBOOKLM_TEST_TEACHER_KEY", max_retries=0, timeout_s=5.0)
    teacher = build_teacher(cfg, tmp_path, stage="synth")
    [first] = teacher.complete([Request(messages=[{"role": "user", "content": "write f"}])], show_progress=False)
    assert first.ok, first.error
    assert first.text == 'def f():\n    return "half a pair: \ud83d"'
    [again] = teacher.complete([Request(messages=[{"role": "user", "content": "write f"}])], show_progress=False)
    assert again.cached and again.text == first.text
    assert _Handler.hits == 1
    teacher.close()


def test_request_key_of_valid_text_is_unchanged_and_surrogates_hash():
    req = Request(messages=[{"role": "user", "content": "café"}])
    blob = json.dumps({"backend": "openai", "model": "m", "messages": list(req.messages), "params": req.params()},
                      sort_keys=True, ensure_ascii=False)
    assert request_key("openai", "m", req) == hashlib.sha256(blob.encode()).hexdigest()
    odd = Request(messages=[{"role": "user", "content": "x \ud800"}])
    assert len(request_key("openai", "m", odd)) == 64
