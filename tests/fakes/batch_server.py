"""A fake of OpenAI's Batch API on 127.0.0.1: ``/v1/files`` and ``/v1/batches``, with its faults.

It speaks the protocol the openai SDK uses: multipart upload of a JSONL input file (purpose
``batch``), batch creation, retrieval (``validating`` -> ``in_progress`` -> ``completed`` after
``polls_to_finish`` polls), listing, and download of the output and error files. Each input line is
answered with an echo of its last message (real ``usage`` counts), unless a fault says otherwise:

- ``fail_lines``: custom ids whose line ends in the error file with a 500 (first time only, so a
  re-batch succeeds) or, in ``bad_lines``, a 400 every time;
- ``expire``: the next batch ends ``expired`` with only its first half answered;
- ``refuse``: the next batch ends ``failed`` with a validation error and no output;
- ``poll_429``: that many polls answered 429 first.

``creates`` counts batches created (the kill-and-resume test checks it never grows on resume).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class BatchFaults:
    fail_lines: set[str] = field(default_factory=set)
    bad_lines: set[str] = field(default_factory=set)
    expire: int = 0
    refuse: int = 0
    poll_429: int = 0


class FakeBatchAPI:
    def __init__(self, polls_to_finish: int = 2) -> None:
        self.polls_to_finish = polls_to_finish
        self.faults = BatchFaults()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.failed_once: set[str] = set()
        self.creates = 0
        self.lines_answered = 0
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeBatchAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the API -------------------------------------------------------------------------------
    def _new_file(self, data: bytes, purpose: str, name: str = "file.jsonl") -> dict[str, Any]:
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = data
        return {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": name, "purpose": purpose, "status": "processed"}

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("input_file_id") not in self.files:
            raise KeyError(body.get("input_file_id"))
        self.creates += 1
        batch_id = f"batch-{len(self.batches) + 1}"
        batch = {"id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                 "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
                 "status": "validating", "output_file_id": None, "error_file_id": None,
                 "created_at": int(time.time()), "metadata": body.get("metadata"),
                 "request_counts": {"total": 0, "completed": 0, "failed": 0},
                 "_expire": self.faults.expire > 0, "_refuse": self.faults.refuse > 0}
        self.faults.expire = max(0, self.faults.expire - 1)
        self.faults.refuse = max(0, self.faults.refuse - 1)
        self.batches[batch_id] = batch
        self.polls[batch_id] = 0
        return batch

    def _answer(self, line: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """('output' | 'errors', the line) for one request line."""
        cid = line["custom_id"]
        if cid in self.faults.bad_lines:
            return "errors", {"id": f"r-{cid[:8]}", "custom_id": cid, "error": None, "response": {
                "status_code": 400, "body": {"error": {"message": "bad request line"}}}}
        if cid in self.faults.fail_lines and cid not in self.failed_once:
            self.failed_once.add(cid)
            return "errors", {"id": f"r-{cid[:8]}", "custom_id": cid, "error": None, "response": {
                "status_code": 500, "body": {"error": {"message": "internal error"}}}}
        messages = line["body"]["messages"]
        text = "echo: " + str(messages[-1]["content"])[:200]
        prompt_tokens = sum(len(str(m["content"]).split()) for m in messages)
        body = {"id": f"chatcmpl-{cid[:8]}", "object": "chat.completion", "model": line["body"]["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()),
                          "total_tokens": prompt_tokens + len(text.split())}}
        self.lines_answered += 1
        return "output", {"id": f"r-{cid[:8]}", "custom_id": cid, "error": None,
                          "response": {"status_code": 200, "request_id": cid[:8], "body": body}}

    def _finish(self, batch: dict[str, Any]) -> None:
        if batch["_refuse"]:
            batch.update(status="failed", errors={"object": "list", "data": [
                {"code": "invalid_request", "message": "line 1: body.model is required", "line": 1}]})
            return
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].splitlines() if x.strip()]
        if batch["_expire"]:
            lines = lines[: len(lines) // 2]
        out: dict[str, list[str]] = {"output": [], "errors": []}
        for line in lines:
            kind, answer = self._answer(line)
            out[kind].append(json.dumps(answer))
        if out["output"]:
            batch["output_file_id"] = self._new_file(("\n".join(out["output"]) + "\n").encode(), "batch_output")["id"]
        if out["errors"]:
            batch["error_file_id"] = self._new_file(("\n".join(out["errors"]) + "\n").encode(), "batch_output")["id"]
        batch["status"] = "expired" if batch["_expire"] else "completed"
        batch["request_counts"] = {"total": len(lines), "completed": len(out["output"]), "failed": len(out["errors"])}

    def _retrieve(self, batch_id: str) -> dict[str, Any] | None:
        batch = self.batches.get(batch_id)
        if batch is None:
            return None
        if batch["status"] not in ("completed", "failed", "expired", "cancelled"):
            self.polls[batch_id] += 1
            if self.polls[batch_id] >= self.polls_to_finish:
                self._finish(batch)
            elif self.polls[batch_id] >= 1:
                batch["status"] = "in_progress"
        return batch

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, payload: Any, raw: bytes | None = None) -> None:
                data = raw if raw is not None else json.dumps(
                    {k: v for k, v in payload.items() if not k.startswith("_")}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/octet-stream" if raw is not None else "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str) -> None:
                self._send(status, {"error": {"message": message, "type": "invalid_request_error"}})

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with api.lock:
                    if self.path.rstrip("/") == "/v1/files":
                        head = f"content-type: {self.headers['content-type']}\r\n\r\n".encode()
                        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
                        parts = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
                        if "file" not in parts:
                            return self._error(400, "no file part")
                        purpose = parts["purpose"].get_content().strip() if "purpose" in parts else ""
                        return self._send(200, api._new_file(parts["file"].get_payload(decode=True), purpose))
                    if self.path.rstrip("/") == "/v1/batches":
                        try:
                            return self._send(200, api._create(json.loads(body)))
                        except KeyError as exc:
                            return self._error(404, f"no such file {exc}")
                return self._error(404, f"no route {self.path}")

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0].rstrip("/")
                with api.lock:
                    if path == "/v1/batches":
                        data = sorted(api.batches.values(), key=lambda b: b["id"], reverse=True)
                        clean = [{k: v for k, v in b.items() if not k.startswith("_")} for b in data]
                        return self._send(200, {"object": "list", "data": clean, "has_more": False})
                    if path.startswith("/v1/batches/"):
                        if api.faults.poll_429 > 0:
                            api.faults.poll_429 -= 1
                            return self._error(429, "slow down")
                        batch = api._retrieve(path.rsplit("/", 1)[1])
                        return self._send(200, batch) if batch else self._error(404, "no such batch")
                    if path.startswith("/v1/files/") and path.endswith("/content"):
                        data = api.files.get(path.split("/")[3])
                        return self._send(200, {}, raw=data) if data is not None else self._error(404, "no file")
                return self._error(404, f"no route {self.path}")

        return Handler


if __name__ == "__main__":  # a standalone fake for the kill test's child process
    import sys

    api = FakeBatchAPI(polls_to_finish=int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    print(api.port, flush=True)
    threading.Event().wait()
