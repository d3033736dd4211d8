"""Shared fixtures for the tokengate end-to-end tests.

* ``fake_upstream``: an OpenAI-compatible upstream (ThreadingHTTPServer in a
  background thread) that speaks the real chat.completion / SSE wire format
  with deterministic usage and records every request it receives.
* ``gateway``: a tokengate-server process in demo mode (temp data dir, random
  port) configured with the fake upstream and a provider pointing at a closed
  port.
* ``small_body_gateway``: a second instance with TOKENGATE_MAX_BODY_BYTES=1000.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROVIDER_KEY = "sk-upstream-test"
FAKE_CONTENT = "Hello from the fake upstream model."
FAKE_COMPLETION_TOKENS = 7
INITIAL_BALANCE_NANO = 5_000_000_000


def server_binary() -> Path:
    if os.environ.get("TOKENGATE_BIN"):
        return Path(os.environ["TOKENGATE_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR") or str(
        Path.home() / ".cache" / "tokengate-target"
    )
    return Path(target) / "debug" / "tokengate-server"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def count_prompt_tokens(messages) -> int:
    words = 0
    for m in messages or []:
        content = m.get("content")
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    words += len(part["text"].split())
    return words


# --------------------------------------------------------------------------
# Fake OpenAI-compatible upstream
# --------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict
    body: dict | None


@dataclass
class FakeUpstream:
    server: ThreadingHTTPServer
    thread: threading.Thread
    requests: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def record(self, req: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(req)

    def last(self) -> RecordedRequest:
        with self.lock:
            assert self.requests, "fake upstream received no requests"
            return self.requests[-1]

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


def make_handler(upstream_ref: dict):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # keep pytest output quiet
            pass

        def _send_json(self, status: int, obj) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            upstream_ref["u"].record(
                RecordedRequest("GET", self.path, {k.lower(): v for k, v in self.headers.items()}, None)
            )
            if self.path.rstrip("/").endswith("/models"):
                self._send_json(
                    200,
                    {
                        "object": "list",
                        "data": [
                            {"id": "gpt-test", "object": "model", "created": 0, "owned_by": "fake"}
                        ],
                    },
                )
            else:
                self._send_json(404, {"error": {"message": "not found", "type": "invalid_request_error", "param": None, "code": None}})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            upstream_ref["u"].record(
                RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            if not self.path.endswith("/chat/completions") or not isinstance(body, dict):
                self._send_json(400, {"error": {"message": "bad request", "type": "invalid_request_error", "param": None, "code": None}})
                return
            if self.headers.get("Authorization") != f"Bearer {PROVIDER_KEY}":
                self._send_json(401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})
                return

            model = body.get("model")
            prompt_tokens = count_prompt_tokens(body.get("messages"))
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": FAKE_COMPLETION_TOKENS,
                "total_tokens": prompt_tokens + FAKE_COMPLETION_TOKENS,
            }
            created = int(time.time())
            cid = "chatcmpl-fake123"

            if not body.get("stream"):
                self._send_json(
                    200,
                    {
                        "id": cid,
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "system_fingerprint": "fp_fake",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": FAKE_CONTENT, "refusal": None},
                                "logprobs": None,
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": usage,
                    },
                )
                return

            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

            def chunk(delta, finish_reason=None, with_choices=True, usage_obj=None):
                c = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_fake",
                    "choices": (
                        [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
                        if with_choices
                        else []
                    ),
                }
                if include_usage:
                    c["usage"] = usage_obj
                return c

            events = [chunk({"role": "assistant", "content": ""})]
            pieces = re.findall(r"\S+\s*", FAKE_CONTENT)
            for p in pieces:
                events.append(chunk({"content": p}))
            events.append(chunk({}, finish_reason="stop"))
            if include_usage:
                events.append(chunk(None, with_choices=False, usage_obj=usage))

            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for ev in events:
                self.wfile.write(f"data: {json.dumps(ev)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler


@pytest.fixture(scope="session")
def fake_upstream():
    ref: dict = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(ref))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    upstream = FakeUpstream(server=server, thread=thread)
    ref["u"] = upstream
    thread.start()
    yield upstream
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------
# tokengate server process
# --------------------------------------------------------------------------


@dataclass
class Gateway:
    proc: subprocess.Popen
    port: int
    data_dir: Path
    api_key: str
    stdout_path: Path
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "tokengate.db"

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        conn.row_factory = sqlite3.Row
        return conn

    def query(self, sql: str, params=()):
        conn = self.db()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def stderr_tail(self, n: int = 4000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def start_gateway(tmp: Path, config_text: str | None = None, extra_env: dict | None = None) -> Gateway:
    binary = server_binary()
    if not binary.exists():
        pytest.fail(f"tokengate-server binary not found at {binary}")
    port = free_port()
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "TOKENGATE_LISTEN": f"127.0.0.1:{port}",
            "TOKENGATE_DATA_DIR": str(data_dir),
            "TOKENGATE_DEMO": "1",
            "TOKENGATE_LOG": "info",
        }
    )
    env.pop("TOKENGATE_DATABASE_URL", None)
    env.update(extra_env or {})
    args = [str(binary)]
    if config_text is not None:
        cfg = tmp / "tokengate.toml"
        cfg.write_text(config_text)
        args += ["--config", str(cfg)]
    stdout_path = tmp / "stdout.log"
    stderr_path = tmp / "stderr.log"
    out = open(stdout_path, "wb")
    err = open(stderr_path, "wb")
    proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=out, stderr=err)
    out.close()
    err.close()

    deadline = time.time() + 60
    key = None
    healthy = False
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"tokengate-server exited early with {proc.returncode}:\n"
                + stderr_path.read_text(errors="replace")[-4000:]
            )
        if key is None:
            m = re.search(r"API key:\s+(sk-tg-\S+)", stdout_path.read_text(errors="replace"))
            if m:
                key = m.group(1)
        if not healthy:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    healthy = r.status == 200
            except (urllib.error.URLError, OSError):
                pass
        if key and healthy:
            break
        time.sleep(0.1)
    else:
        stop_process(proc)
        raise RuntimeError(
            f"tokengate-server not ready (key={key!r}, healthy={healthy}):\n"
            + stderr_path.read_text(errors="replace")[-4000:]
        )
    assert len(key) == 49, f"unexpected demo key length: {key!r}"
    return Gateway(proc, port, data_dir, key, stdout_path, stderr_path)


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def closed_port() -> int:
    # Bind and immediately release a port: nothing is listening there afterwards.
    return free_port()


@pytest.fixture(scope="session")
def gateway(fake_upstream):
    dead_port = closed_port()
    config = f"""
[[providers]]
name = "fake"
kind = "openai"
base_url = "{fake_upstream.base_url}"
api_key = "{PROVIDER_KEY}"

[[providers]]
name = "dead"
kind = "openai"
base_url = "http://127.0.0.1:{dead_port}/v1"
api_key = "sk-dead"

[[models]]
name = "fake/gpt-test"
provider = "fake"
upstream_model = "gpt-test"
input_usd_per_m = "0.15"
output_usd_per_m = "0.60"

[[models]]
name = "dead/gpt-dead"
provider = "dead"
upstream_model = "gpt-dead"
input_usd_per_m = "1.00"
output_usd_per_m = "2.00"

[[aliases]]
name = "tokengate-test"
targets = [{{ model = "fake/gpt-test" }}]
"""
    with tempfile.TemporaryDirectory(prefix="tokengate-e2e-") as tmp:
        gw = start_gateway(Path(tmp), config)
        try:
            yield gw
        finally:
            stop_process(gw.proc)


@pytest.fixture(scope="session")
def small_body_gateway():
    with tempfile.TemporaryDirectory(prefix="tokengate-e2e-small-") as tmp:
        gw = start_gateway(Path(tmp), None, {"TOKENGATE_MAX_BODY_BYTES": "1000"})
        try:
            yield gw
        finally:
            stop_process(gw.proc)


@pytest.fixture()
def client(gateway):
    import openai

    return openai.OpenAI(api_key=gateway.api_key, base_url=gateway.base_url, max_retries=0, timeout=30)
