"""A fault-injecting fake LLM upstream for the tokengate end-to-end tests.

One ``ThreadingHTTPServer`` in a background thread that speaks the real wire formats:

* OpenAI ``POST /v1/chat/completions`` — ``chat.completion`` JSON, or SSE
  (``data: {...}`` … ``data: [DONE]``) honouring ``stream_options.include_usage``;
  usage carries ``prompt_tokens_details.cached_tokens``. Checks
  ``Authorization: Bearer <OPENAI_KEY>``.
* OpenAI ``POST /v1/embeddings`` — ``encoding_format`` ``float`` (default) or
  ``base64`` (little-endian float32); deterministic vectors (:func:`fake_embedding`);
  ``usage.prompt_tokens``. Checks the bearer key.
* Anthropic ``POST /v1/messages`` — a ``message`` object, or SSE exactly as Anthropic
  sends it (``message_start``, ``content_block_start``, ``ping``,
  ``content_block_delta``…, ``content_block_stop``, ``message_delta``,
  ``message_stop``). Checks ``x-api-key: <ANTHROPIC_KEY>`` (or the same key as
  ``Authorization: Bearer``, which is how the anthropic SDK sends it) and that
  ``anthropic-version`` is present, and rejects bodies the real API would reject
  (missing ``max_tokens``, a ``system`` role inside ``messages``, unknown block
  types, a ``tool_result`` without its ``tool_use``...).
* ``GET /v1/models`` (OpenAI list).

Streams use ``Transfer-Encoding: chunked`` like real upstreams, so a connection cut
mid-body is detectable as such by the client.

Token counts are deterministic so tests can predict usage and cost exactly:

* prompt tokens = whitespace-separated words of every text the model reads: OpenAI
  message ``content`` (string or ``text`` parts; the system message is a message),
  Anthropic ``system`` plus ``text`` blocks and ``tool_result`` contents; images, tool
  calls and tool definitions count 0. The same conversation therefore counts the same
  in both formats.
* completion tokens = :data:`FAKE_COMPLETION_TOKENS` (7) for the text answer
  :data:`FAKE_CONTENT` (streamed as the 6 pieces of :data:`FAKE_PIECES`); when
  ``max_tokens``/``max_completion_tokens`` is smaller, the first ``max_tokens`` pieces
  and ``max_tokens`` tokens (finish ``length`` / stop ``max_tokens``); when a stop
  sequence occurs in the answer, the text before it and one token per delivered piece
  (finish ``stop`` / stop ``stop_sequence``).
* a tool-call answer costs :data:`TOOL_COMPLETION_TOKENS` (12).
* embeddings: prompt tokens = words of every input string (or the length of token
  arrays).

Faults are chosen per request by markers in the text of the *last message, if it is a
user message* (OpenAI: ``role == "user"``; Anthropic: the ``text`` blocks of a final
``user`` message, not its ``tool_result`` blocks; embeddings: any input string). A
conversation whose last message is a tool result therefore gets a plain answer.
Markers survive translation because text does. Several markers may be combined:

* ``[fault:status:NNN]`` — answer NNN with a proper error body of the endpoint's format
  (``Retry-After: 1`` on 429).
* ``[fault:delay:MS]`` — sleep MS milliseconds before sending the headers (then answer
  normally, or apply the other markers).
* ``[fault:reset]`` — close the socket (RST) without any response.
* ``[fault:cut:N]`` — stream: N content chunks (text deltas, or tool-argument fragments)
  then close the connection with no terminator (no final chunk, no ``[DONE]`` /
  ``message_stop``). Non-stream: headers with the full ``Content-Length`` and the first
  N bytes of the body, then close.
* ``[fault:linger:MS]`` — stream: send every event (through ``[DONE]`` /
  ``message_stop``), then wait MS milliseconds before ending the chunked body.
* ``[fault:malformed]`` — 200 with invalid JSON; for a stream, a first valid event then
  one event whose data is invalid JSON, then the body ends.
* ``[fault:tool]`` — answer with a tool call ``get_weather({"city": "Paris"})``: OpenAI
  ``tool_calls`` (id ``call_fake01``, arguments streamed as several fragments,
  ``finish_reason: tool_calls``); Anthropic a text block "Let me check the weather."
  then a ``tool_use`` block (id ``toolu_fake01``, ``input_json_delta`` fragments,
  ``stop_reason: tool_use``).
* ``[fault:tool:NAME]`` — the same, calling tool NAME instead with arguments
  ``{"input": CUSTOM_TOOL_INPUT}`` (the one-string function a Responses ``custom`` tool
  such as ``apply_patch`` is translated to); ``[fault:tool:get_weather]`` is ``[fault:tool]``.
* ``[fault:cached:N]`` — report N cached (cache-read) prompt tokens: OpenAI
  ``prompt_tokens_details.cached_tokens = N`` (within ``prompt_tokens``); Anthropic
  ``cache_read_input_tokens = N`` with ``input_tokens`` the uncached rest.
* ``[fault:cachewrite:N]`` — Anthropic only: ``cache_creation_input_tokens = N`` (also
  taken out of ``input_tokens``); OpenAI ignores it.
* ``[fault:replay:NAME]`` — stream: send the recorded stream
  ``server/tests/fixtures/streams/NAME.sse`` (a real provider's bytes, listed with what
  it must deliver in ``manifest.json`` beside it) byte for byte, in 13-byte chunks, after
  the usual authentication and validation of the request.

A fault can also be pinned to a *provider* by its base URL: requests to
``/fault/<spec>/v1/...`` (see :meth:`FakeUpstream.fault_base_url`) always get ``<spec>``
(e.g. ``status:503``, ``delay:5000``, ``reset``), whatever the body says — so one alias
target can fail while another is healthy.

Every request is recorded (method, path, lower-cased headers, parsed body, raw bytes).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import struct
import threading
import time
from collections import Counter
from pathlib import Path
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OPENAI_KEY = "sk-upstream-test"
ANTHROPIC_KEY = "sk-ant-upstream-test"
ANTHROPIC_VERSION = "2023-06-01"

FAKE_CONTENT = "Hello from the fake upstream model."
FAKE_PIECES = re.findall(r"\S+\s*", FAKE_CONTENT)  # 6 pieces, one per content chunk
FAKE_COMPLETION_TOKENS = 7
TOOL_COMPLETION_TOKENS = 12
TOOL_NAME = "get_weather"
TOOL_ARGS = {"city": "Paris"}
TOOL_ARG_FRAGMENTS = ['{"ci', 'ty": ', '"Par', 'is"}']  # concatenates to json.dumps(TOOL_ARGS)
OPENAI_TOOL_CALL_ID = "call_fake01"
ANTHROPIC_TOOL_USE_ID = "toolu_fake01"
ANTHROPIC_TOOL_PREAMBLE = "Let me check the weather."
OPENAI_COMPLETION_ID = "chatcmpl-fake123"
ANTHROPIC_MESSAGE_ID = "msg_fake123"
EMBEDDING_DIMS = 8

CUSTOM_TOOL_INPUT = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"

assert "".join(TOOL_ARG_FRAGMENTS) == json.dumps(TOOL_ARGS)


def tool_call_of(faults: dict) -> tuple[str, dict, list[str]]:
    """(name, arguments, streamed argument fragments) of the ``[fault:tool(:NAME)]`` call."""
    name = faults.get("tool") or TOOL_NAME
    if name == TOOL_NAME:
        return TOOL_NAME, TOOL_ARGS, TOOL_ARG_FRAGMENTS
    args = {"input": CUSTOM_TOOL_INPUT}
    text = json.dumps(args)
    step = max(1, len(text) // 4)
    return name, args, [text[i : i + step] for i in range(0, len(text), step)]
assert "".join(FAKE_PIECES) == FAKE_CONTENT

MARKER_RE = re.compile(r"\[fault:([a-z_]+)(?::([^\]\s]*))?\]")
FAULT_PATH_RE = re.compile(r"^/fault/([^/]+)(/.*)$")
RECORDED_STREAMS_DIR = Path(__file__).resolve().parents[2] / "server" / "tests" / "fixtures" / "streams"


# --------------------------------------------------------------------------
# Deterministic helpers shared with the tests
# --------------------------------------------------------------------------


def words(text: str | None) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def parse_faults(text: str) -> dict:
    """``{"status": "429", "tool": "", ...}`` for the markers in ``text``."""
    return {m.group(1): (m.group(2) or "") for m in MARKER_RE.finditer(text or "")}


def _parse_fault_spec(spec: str) -> dict:
    name, _, arg = spec.partition(":")
    return {name: arg}


def fake_embedding(text: str, dims: int = EMBEDDING_DIMS) -> list[float]:
    """The fake's vector for ``text``: multiples of 1/256 in [-0.5, 0.5), so every
    value is exact in float32 and base64 decodes to exactly the float answer."""
    out: list[float] = []
    block = 0
    while len(out) < dims:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        out.extend((b - 128) / 256 for b in digest)
        block += 1
    return out[:dims]


def embedding_b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def decode_embedding_b64(data: str) -> list[float]:
    raw = base64.b64decode(data)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _openai_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def count_prompt_tokens(messages) -> int:
    """OpenAI chat: words of every message's text content."""
    return sum(words(_openai_text(m.get("content"))) for m in messages or [] if isinstance(m, dict))


def _anthropic_block_text(block) -> str:
    if not isinstance(block, dict):
        return ""
    t = block.get("type")
    if t == "text":
        return block.get("text") or ""
    if t == "tool_result":
        c = block.get("content")
        if isinstance(c, str):
            return c
        if isinstance(c, list):
            return " ".join(_anthropic_block_text(b) for b in c)
    return ""


def _anthropic_content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_anthropic_block_text(b) for b in content)
    return ""


def count_anthropic_prompt_tokens(body: dict) -> int:
    """Anthropic messages: words of ``system`` and of every text / tool_result block."""
    total = words(_anthropic_content_text(body.get("system")))
    for m in body.get("messages") or []:
        if isinstance(m, dict):
            total += words(_anthropic_content_text(m.get("content")))
    return total


def openai_marker_text(body: dict) -> str:
    msgs = body.get("messages") or []
    if msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "user":
        return _openai_text(msgs[-1].get("content"))
    return ""


def anthropic_marker_text(body: dict) -> str:
    msgs = body.get("messages") or []
    if msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "user":
        c = msgs[-1].get("content")
        if isinstance(c, str):
            return c
        if isinstance(c, list):
            return " ".join(
                b.get("text") or "" for b in c if isinstance(b, dict) and b.get("type") == "text"
            )
    return ""


def embeddings_inputs(inp) -> list[tuple[str, int]]:
    """(text used for the vector, token count) for each input of an embeddings body."""
    if isinstance(inp, str):
        return [(inp, words(inp))]
    if isinstance(inp, list):
        if inp and all(isinstance(x, int) for x in inp):
            return [(",".join(map(str, inp)), len(inp))]
        out = []
        for x in inp:
            if isinstance(x, str):
                out.append((x, words(x)))
            elif isinstance(x, list):
                out.append((",".join(map(str, x)), len(x)))
            else:
                raise ValueError("bad input item")
        return out
    raise ValueError("bad input")


def text_answer(max_tokens: int | None, stops: list[str]) -> tuple[list[str], int, str | None]:
    """(pieces, completion tokens, why) for the plain answer under ``max_tokens`` and
    stop sequences; why is None (natural end), ``"length"`` or the stop sequence hit."""
    pieces = list(FAKE_PIECES)
    tokens = FAKE_COMPLETION_TOKENS
    for s in stops:
        if s and s in FAKE_CONTENT:
            cut = FAKE_CONTENT.index(s)
            text = FAKE_CONTENT[:cut]
            kept = re.findall(r"\S+\s*", text)
            return kept, len(kept), s
    if max_tokens is not None and max_tokens < tokens:
        kept = pieces[:max_tokens]
        return kept, max_tokens, "length"
    return pieces, tokens, None


# --------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict
    body: object | None
    raw: bytes = b""
    faults: dict = field(default_factory=dict)


class FakeUpstream:
    """The running fake; use :func:`start_fake_upstream` (or the ``fake_upstream``
    fixture)."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), _make_handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- lifecycle -------------------------------------------------------
    def start(self) -> "FakeUpstream":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- addresses ---------------------------------------------------------
    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        """Root URL (what the Anthropic SDK takes as ``base_url``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``{url}/v1`` (what providers and the OpenAI SDK take as ``base_url``)."""
        return f"{self.url}/v1"

    def fault_base_url(self, spec: str) -> str:
        """A base URL whose every request gets fault ``spec`` (``status:503``,
        ``delay:5000``, ``reset``, ...)."""
        return f"{self.url}/fault/{spec}/v1"

    # -- record ------------------------------------------------------------
    def record(self, req: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(req)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()

    def all(self, path_suffix: str | None = None) -> list[RecordedRequest]:
        with self.lock:
            reqs = list(self.requests)
        if path_suffix is None:
            return reqs
        return [r for r in reqs if r.path.split("?")[0].endswith(path_suffix)]

    def last(self, path_suffix: str | None = None) -> RecordedRequest:
        reqs = self.all(path_suffix)
        assert reqs, f"fake upstream received no requests{' for ' + path_suffix if path_suffix else ''}"
        return reqs[-1]

    def count(self, path_suffix: str | None = None) -> int:
        return len(self.all(path_suffix))

    def counts(self) -> Counter:
        """Requests per path."""
        return Counter(r.path.split("?")[0] for r in self.all())

    def wait_for_count(self, n: int, path_suffix: str | None = None, timeout: float = 5.0) -> int:
        deadline = time.time() + timeout
        while self.count(path_suffix) < n and time.time() < deadline:
            time.sleep(0.02)
        return self.count(path_suffix)


def start_fake_upstream() -> FakeUpstream:
    return FakeUpstream().start()


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # keep the test output quiet
        pass


# --------------------------------------------------------------------------
# Error bodies
# --------------------------------------------------------------------------

_OPENAI_ERR = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    413: ("invalid_request_error", None),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}

_ANTHROPIC_ERR = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def openai_error(status: int, message: str | None = None) -> dict:
    typ, code = _OPENAI_ERR.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {
        "error": {
            "message": message or f"Fake upstream error {status}.",
            "type": typ,
            "param": None,
            "code": code,
        }
    }


def anthropic_error(status: int, message: str | None = None) -> dict:
    typ = _ANTHROPIC_ERR.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": typ, "message": message or f"Fake upstream error {status}."}}


class _BadRequest(Exception):
    pass


# --------------------------------------------------------------------------
# Validation (what the real APIs would reject)
# --------------------------------------------------------------------------

_OPENAI_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_ANTHROPIC_BLOCKS = {
    "text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking",
    "server_tool_use", "web_search_tool_result", "search_result",
}


def validate_openai_chat(body: dict) -> None:
    msgs = body.get("messages")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _BadRequest("you must provide a model parameter")
    if not isinstance(msgs, list) or not msgs:
        raise _BadRequest("'messages' must be a non-empty array")
    tool_ids: set[str] = set()
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in _OPENAI_ROLES:
            raise _BadRequest(f"messages[{i}]: invalid role")
        if m["role"] == "assistant":
            for tc in m.get("tool_calls") or []:
                if tc.get("type") != "function" or not isinstance(tc.get("id"), str):
                    raise _BadRequest(f"messages[{i}].tool_calls: invalid tool call")
                fn = tc.get("function") or {}
                if not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), str):
                    raise _BadRequest(f"messages[{i}].tool_calls: function name/arguments must be strings")
                tool_ids.add(tc["id"])
        if m["role"] == "tool":
            if m.get("tool_call_id") not in tool_ids:
                raise _BadRequest(
                    f"messages[{i}]: messages with role 'tool' must be a response to a preceding "
                    "message with 'tool_calls'"
                )
    for t in body.get("tools") or []:
        if t.get("type") != "function" or not isinstance((t.get("function") or {}).get("name"), str):
            raise _BadRequest("tools: each tool must be {type: function, function: {name, ...}}")


def validate_anthropic(body: dict) -> None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _BadRequest("model: Field required")
    mt = body.get("max_tokens")
    if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
        raise _BadRequest("max_tokens: Field required")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise _BadRequest("messages: Field required")
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise _BadRequest("system: Input should be a valid string or list of text blocks")
    if isinstance(system, list):
        for b in system:
            if not isinstance(b, dict) or b.get("type") != "text":
                raise _BadRequest("system: blocks must be text blocks")
    tool_ids: set[str] = set()
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise _BadRequest(f'messages.{i}.role: Input should be "user" or "assistant"')
        c = m.get("content")
        if isinstance(c, str):
            continue
        if not isinstance(c, list):
            raise _BadRequest(f"messages.{i}.content: Input should be a valid string or list")
        for j, b in enumerate(c):
            if not isinstance(b, dict) or b.get("type") not in _ANTHROPIC_BLOCKS:
                raise _BadRequest(f"messages.{i}.content.{j}: unknown content block type")
            t = b["type"]
            if t == "text" and not isinstance(b.get("text"), str):
                raise _BadRequest(f"messages.{i}.content.{j}.text: Field required")
            if t == "image":
                src = b.get("source") or {}
                if src.get("type") == "base64":
                    if not src.get("media_type") or not isinstance(src.get("data"), str):
                        raise _BadRequest(f"messages.{i}.content.{j}.source: media_type and data required")
                elif src.get("type") == "url":
                    if not isinstance(src.get("url"), str):
                        raise _BadRequest(f"messages.{i}.content.{j}.source.url: Field required")
                else:
                    raise _BadRequest(f"messages.{i}.content.{j}.source: invalid image source")
            if t == "tool_use":
                if m["role"] != "assistant":
                    raise _BadRequest(f"messages.{i}: tool_use blocks must be in assistant messages")
                if not isinstance(b.get("id"), str) or not isinstance(b.get("name"), str):
                    raise _BadRequest(f"messages.{i}.content.{j}: tool_use needs id and name")
                if not isinstance(b.get("input"), dict):
                    raise _BadRequest(f"messages.{i}.content.{j}.input: Input should be a valid dictionary")
                tool_ids.add(b["id"])
            if t == "tool_result":
                if m["role"] != "user":
                    raise _BadRequest(f"messages.{i}: tool_result blocks must be in user messages")
                if b.get("tool_use_id") not in tool_ids:
                    raise _BadRequest(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks"
                    )
    for t in body.get("tools") or []:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise _BadRequest("tools: name required")
        if t.get("type") in (None, "custom") and not isinstance(t.get("input_schema"), dict):
            raise _BadRequest("tools.input_schema: Field required")


# --------------------------------------------------------------------------
# The handler
# --------------------------------------------------------------------------


def _make_handler(up: FakeUpstream):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # keep pytest output quiet
            pass

        # -- low-level writers --------------------------------------------
        def _send_json(self, status: int, obj, extra_headers: dict | None = None) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra_headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def _send_raw_json(self, status: int, data: bytes, cut: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if cut is None:
                self.wfile.write(data)
                self.wfile.flush()
                return
            self.wfile.write(data[:cut])
            self.wfile.flush()
            self._hang_up()

        def _start_sse(self, extra_headers: dict | None = None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            for k, v in (extra_headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.close_connection = True

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _end_chunks(self) -> None:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _hang_up(self) -> None:
            """Close abruptly after what was sent (FIN, data already sent is kept)."""
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def _reset(self) -> None:
            """Close with RST and no response at all."""
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.rfile.close()
                self.wfile.close()
                self.connection.close()
            except OSError:
                pass

        def _stream_events(self, events: list[tuple[bytes, bool]], faults: dict, terminator: bytes | None) -> None:
            """Writes SSE events ((bytes, is_content) pairs) honouring cut:N."""
            cut = int(faults["cut"]) if "cut" in faults and faults["cut"].isdigit() else None
            if cut is not None:
                sent_content = 0
                for data, is_content in events:
                    if is_content and sent_content >= cut:
                        break
                    self._chunk(data)
                    if is_content:
                        sent_content += 1
                self._hang_up()
                return
            if terminator:
                events = events + [(terminator, False)]
            if faults.get("linger", "").isdigit():
                # Every event, then a pause before the end of the body.
                for data, _ in events:
                    self._chunk(data)
                time.sleep(int(faults["linger"]) / 1000)
                self._end_chunks()
                return
            for data, _ in events[:-1]:
                self._chunk(data)
            # The last event and the end of the chunked body leave in one write, as they
            # usually do from real servers (one TCP segment).
            last = events[-1][0]
            self.wfile.write(f"{len(last):x}\r\n".encode() + last + b"\r\n0\r\n\r\n")
            self.wfile.flush()

        # -- dispatch --------------------------------------------------------
        def do_GET(self):
            path, pinned = self._split_path()
            up.record(RecordedRequest("GET", self.path, self._headers(), None, b"", pinned))
            try:
                if path.rstrip("/").endswith("/models"):
                    self._send_json(
                        200,
                        {
                            "object": "list",
                            "data": [
                                {"id": "gpt-test", "object": "model", "created": 0, "owned_by": "fake"},
                                {"id": "embed-test", "object": "model", "created": 0, "owned_by": "fake"},
                            ],
                        },
                    )
                else:
                    self._send_json(404, openai_error(404, "not found"))
            except (BrokenPipeError, ConnectionResetError):
                pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            path, pinned = self._split_path()
            if path.endswith("/messages"):
                fmt = "anthropic"
                marker_text = anthropic_marker_text(body) if isinstance(body, dict) else ""
            elif path.endswith("/embeddings"):
                fmt = "embeddings"
                marker_text = ""
                if isinstance(body, dict):
                    inp = body.get("input")
                    if isinstance(inp, str):
                        marker_text = inp
                    elif isinstance(inp, list):
                        marker_text = " ".join(x for x in inp if isinstance(x, str))
            else:
                fmt = "openai"
                marker_text = openai_marker_text(body) if isinstance(body, dict) else ""
            faults = parse_faults(marker_text)
            faults.update(pinned)  # a provider-pinned fault wins
            up.record(RecordedRequest("POST", self.path, self._headers(), body, raw, faults))
            try:
                self._dispatch(fmt, path, body, faults)
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                self.close_connection = True

        def _headers(self) -> dict:
            return {k.lower(): v for k, v in self.headers.items()}

        def _split_path(self) -> tuple[str, dict]:
            path = self.path.split("?")[0]
            m = FAULT_PATH_RE.match(path)
            if m:
                return m.group(2), _parse_fault_spec(m.group(1))
            return path, {}

        def _error(self, fmt: str, status: int, message: str | None = None) -> None:
            extra = {"Retry-After": "1"} if status == 429 else {}
            if fmt == "anthropic":
                extra["request-id"] = "req_fake_error"
                self._send_json(status, anthropic_error(status, message), extra)
            else:
                self._send_json(status, openai_error(status, message), extra)

        def _dispatch(self, fmt: str, path: str, body, faults: dict) -> None:
            if "delay" in faults:
                try:
                    time.sleep(int(faults["delay"]) / 1000)
                except ValueError:
                    pass
            if "reset" in faults:
                self._reset()
                return
            known = (
                path.endswith("/v1/chat/completions")
                or path.endswith("/v1/embeddings")
                or path.endswith("/v1/messages")
            )
            if not known:
                self._error(fmt, 404, f"Unknown path {path}.")
                return
            # Authentication first, as the real APIs do.
            if fmt == "anthropic":
                # x-api-key is what tokengate sends (and the tests check the record); the
                # anthropic SDK itself sends its api_key as a bearer token.
                if (
                    self.headers.get("x-api-key") != ANTHROPIC_KEY
                    and self.headers.get("Authorization") != f"Bearer {ANTHROPIC_KEY}"
                ):
                    self._error(fmt, 401, "invalid x-api-key")
                    return
                if not self.headers.get("anthropic-version"):
                    self._error(fmt, 400, "anthropic-version: header is required")
                    return
            else:
                if self.headers.get("Authorization") != f"Bearer {OPENAI_KEY}":
                    self._error(fmt, 401, "Incorrect API key provided.")
                    return
            if "status" in faults:
                try:
                    status = int(faults["status"])
                except ValueError:
                    status = 500
                self._error(fmt, status, f"Injected fault: status {status}.")
                return
            if not isinstance(body, dict):
                self._error(fmt, 400, "The request body is not valid JSON.")
                return
            try:
                if fmt == "anthropic":
                    validate_anthropic(body)
                elif fmt == "openai":
                    validate_openai_chat(body)
            except _BadRequest as e:
                self._error(fmt, 400, str(e))
                return
            if "replay" in faults:
                self._replay(faults["replay"])
            elif fmt == "anthropic":
                self._anthropic(body, faults)
            elif fmt == "embeddings":
                self._embeddings(body, faults)
            else:
                self._openai_chat(body, faults)

        # -- recorded streams -----------------------------------------------
        def _replay(self, name: str) -> None:
            if not re.fullmatch(r"[a-z0-9_]+", name) or not (RECORDED_STREAMS_DIR / f"{name}.sse").is_file():
                self._error("openai", 404, f"No recorded stream {name!r}.")
                return
            data = (RECORDED_STREAMS_DIR / f"{name}.sse").read_bytes()
            self._start_sse()
            for i in range(0, len(data), 13):
                self._chunk(data[i : i + 13])
            self._end_chunks()

        # -- OpenAI chat ---------------------------------------------------
        def _openai_chat(self, body: dict, faults: dict) -> None:
            model = body.get("model")
            prompt_tokens = count_prompt_tokens(body.get("messages"))
            cached = 0
            if faults.get("cached", "").isdigit():
                cached = min(int(faults["cached"]), prompt_tokens)
            tool = "tool" in faults
            tool_name, tool_args, tool_frags = tool_call_of(faults)
            max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
            stop = body.get("stop")
            stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if isinstance(s, str)]
            if tool:
                pieces, completion_tokens, why = [], TOOL_COMPLETION_TOKENS, None
                finish = "tool_calls"
            else:
                pieces, completion_tokens, why = text_answer(
                    max_tokens if isinstance(max_tokens, int) else None, stops
                )
                finish = "length" if why == "length" else "stop"
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            }
            created = int(time.time())
            cid = OPENAI_COMPLETION_ID

            if not body.get("stream"):
                if "malformed" in faults:
                    self._send_raw_json(200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assis')
                    return
                if tool:
                    message = {
                        "role": "assistant",
                        "content": None,
                        "refusal": None,
                        "tool_calls": [
                            {
                                "id": OPENAI_TOOL_CALL_ID,
                                "type": "function",
                                "function": {"name": tool_name, "arguments": json.dumps(tool_args)},
                            }
                        ],
                    }
                else:
                    message = {"role": "assistant", "content": "".join(pieces), "refusal": None}
                data = json.dumps(
                    {
                        "id": cid,
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "system_fingerprint": "fp_fake",
                        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                        "usage": usage,
                        "service_tier": "default",
                    }
                ).encode()
                cut = int(faults["cut"]) if faults.get("cut", "").isdigit() else None
                self._send_raw_json(200, data, cut)
                return

            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

            def chunk(delta, finish_reason=None, with_choices=True, usage_obj=None) -> bytes:
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
                return f"data: {json.dumps(c)}\n\n".encode()

            events: list[tuple[bytes, bool]] = []
            if tool:
                events.append(
                    (
                        chunk(
                            {
                                "role": "assistant",
                                "content": None,
                                "tool_calls": [
                                    {
                                        "index": 0,
                                        "id": OPENAI_TOOL_CALL_ID,
                                        "type": "function",
                                        "function": {"name": tool_name, "arguments": ""},
                                    }
                                ],
                            }
                        ),
                        False,
                    )
                )
                for frag in tool_frags:
                    events.append((chunk({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}), True))
            else:
                events.append((chunk({"role": "assistant", "content": "", "refusal": None}), False))
                for p in pieces:
                    events.append((chunk({"content": p}), True))
            if "malformed" in faults:
                events = events[:1] + [(b'data: {"id": "chatcmpl-fake123", "choices": [{"delta": {"content": "Hel\n\n', False)]
                self._start_sse()
                for data, _ in events:
                    self._chunk(data)
                self._end_chunks()
                return
            events.append((chunk({}, finish_reason=finish), False))
            if include_usage:
                events.append((chunk(None, with_choices=False, usage_obj=usage), False))
            self._start_sse()
            self._stream_events(events, faults, b"data: [DONE]\n\n")

        # -- OpenAI embeddings -------------------------------------------------
        def _embeddings(self, body: dict, faults: dict) -> None:
            fmt = body.get("encoding_format") or "float"
            if fmt not in ("float", "base64"):
                self._error("openai", 400, "encoding_format must be 'float' or 'base64'")
                return
            if not isinstance(body.get("model"), str):
                self._error("openai", 400, "you must provide a model parameter")
                return
            try:
                inputs = embeddings_inputs(body.get("input"))
            except ValueError:
                self._error("openai", 400, "'input' must be a string, an array of strings or token arrays")
                return
            if not inputs:
                self._error("openai", 400, "'input' must not be empty")
                return
            dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) else EMBEDDING_DIMS
            if "malformed" in faults:
                self._send_raw_json(200, b'{"object": "list", "data": [{"object": "embedding", "embedding": [0.1, ')
                return
            data = []
            tokens = 0
            for i, (text, n) in enumerate(inputs):
                vec = fake_embedding(text, dims)
                data.append(
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": vec if fmt == "float" else embedding_b64(vec),
                    }
                )
                tokens += n
            payload = json.dumps(
                {
                    "object": "list",
                    "data": data,
                    "model": body["model"],
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            ).encode()
            cut = int(faults["cut"]) if faults.get("cut", "").isdigit() else None
            self._send_raw_json(200, payload, cut)

        # -- Anthropic messages -------------------------------------------------
        def _anthropic(self, body: dict, faults: dict) -> None:
            model = body.get("model")
            total_in = count_anthropic_prompt_tokens(body)
            cache_read = min(int(faults["cached"]), total_in) if faults.get("cached", "").isdigit() else 0
            cache_write = (
                min(int(faults["cachewrite"]), total_in - cache_read)
                if faults.get("cachewrite", "").isdigit()
                else 0
            )
            input_tokens = total_in - cache_read - cache_write
            tool = "tool" in faults
            tool_name, tool_args, tool_frags = tool_call_of(faults)
            stops = [s for s in (body.get("stop_sequences") or []) if isinstance(s, str)]
            if tool:
                pieces, output_tokens, why = [], TOOL_COMPLETION_TOKENS, None
                stop_reason, stop_sequence = "tool_use", None
            else:
                pieces, output_tokens, why = text_answer(body.get("max_tokens"), stops)
                if why is None:
                    stop_reason, stop_sequence = "end_turn", None
                elif why == "length":
                    stop_reason, stop_sequence = "max_tokens", None
                else:
                    stop_reason, stop_sequence = "stop_sequence", why

            def usage(out: int) -> dict:
                return {
                    "input_tokens": input_tokens,
                    "cache_creation_input_tokens": cache_write,
                    "cache_read_input_tokens": cache_read,
                    "output_tokens": out,
                    "service_tier": "standard",
                }

            headers = {"request-id": "req_fake_anthropic", "anthropic-organization-id": "fake-org"}

            if not body.get("stream"):
                if "malformed" in faults:
                    self._send_raw_json(200, b'{"id": "msg_broken", "type": "message", "content": [{"type": "te')
                    return
                if tool:
                    content = [
                        {"type": "text", "text": ANTHROPIC_TOOL_PREAMBLE},
                        {"type": "tool_use", "id": ANTHROPIC_TOOL_USE_ID, "name": tool_name, "input": tool_args},
                    ]
                else:
                    content = [{"type": "text", "text": "".join(pieces)}]
                msg = {
                    "id": ANTHROPIC_MESSAGE_ID,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop_reason,
                    "stop_sequence": stop_sequence,
                    "usage": usage(output_tokens),
                }
                data = json.dumps(msg).encode()
                cut = int(faults["cut"]) if faults.get("cut", "").isdigit() else None
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if cut is None:
                    self.wfile.write(data)
                    self.wfile.flush()
                else:
                    self.wfile.write(data[:cut])
                    self._hang_up()
                return

            def ev(name: str, obj: dict) -> bytes:
                return f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode()

            start_msg = {
                "id": ANTHROPIC_MESSAGE_ID,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage(1),
            }
            events: list[tuple[bytes, bool]] = [(ev("message_start", {"type": "message_start", "message": start_msg}), False)]
            if "malformed" in faults:
                events.append((b'event: content_block_start\ndata: {"type": "content_block_start", "index": 0, "content_bl\n\n', False))
                self._start_sse(headers)
                for data, _ in events:
                    self._chunk(data)
                self._end_chunks()
                return
            blocks: list[tuple[dict, list[dict]]] = []
            if tool:
                blocks.append(
                    (
                        {"type": "text", "text": ""},
                        [{"type": "text_delta", "text": ANTHROPIC_TOOL_PREAMBLE}],
                    )
                )
                blocks.append(
                    (
                        {"type": "tool_use", "id": ANTHROPIC_TOOL_USE_ID, "name": tool_name, "input": {}},
                        [{"type": "input_json_delta", "partial_json": ""}]
                        + [{"type": "input_json_delta", "partial_json": f} for f in tool_frags],
                    )
                )
            else:
                blocks.append(({"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in pieces]))
            for index, (start, deltas) in enumerate(blocks):
                events.append(
                    (ev("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}), False)
                )
                if index == 0:
                    events.append((ev("ping", {"type": "ping"}), False))
                for d in deltas:
                    is_content = bool(d.get("text") or d.get("partial_json"))
                    events.append(
                        (ev("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}), is_content)
                    )
                events.append((ev("content_block_stop", {"type": "content_block_stop", "index": index}), False))
            events.append(
                (
                    ev(
                        "message_delta",
                        {
                            "type": "message_delta",
                            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                            "usage": {"output_tokens": output_tokens},
                        },
                    ),
                    False,
                )
            )
            events.append((ev("message_stop", {"type": "message_stop"}), False))
            self._start_sse(headers)
            self._stream_events(events, faults, None)

    return Handler
