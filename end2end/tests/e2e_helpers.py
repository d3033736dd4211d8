"""Helpers shared by the end-to-end test modules: exact cost prediction, request-log and
balance polling, raw HTTP / SSE access to the gateway."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from decimal import Decimal
from urllib.parse import urlsplit

from conftest import INITIAL_BALANCE_NANO, MULTI_PRICES

DEMO_USER_ID = 1


# --------------------------------------------------------------------------
# Money
# --------------------------------------------------------------------------


def nano_per_m(usd: str) -> int:
    """"0.15" USD per million tokens -> nano-USD per million tokens."""
    return int(Decimal(usd) * 1_000_000_000)


def prices(model: str) -> tuple[int, int, int, int]:
    """(input, output, cache_read, cache_write) in nano-USD per million tokens; a missing
    cache price is the input price."""
    inp, out, cr, cw = MULTI_PRICES[model]
    i = nano_per_m(inp)
    return i, nano_per_m(out), nano_per_m(cr) if cr else i, nano_per_m(cw) if cw else i


def cost_nano(model: str, uncached_in: int, out: int, cache_read: int = 0, cache_write: int = 0) -> int:
    """round_half_up((uncached_in*in + cache_read*cr + cache_write*cw + out*out)/1e6)."""
    i, o, cr, cw = prices(model)
    total = uncached_in * i + cache_read * cr + cache_write * cw + out * o
    return (total + 500_000) // 1_000_000


# --------------------------------------------------------------------------
# Polling the database
# --------------------------------------------------------------------------


def poll(fn, timeout: float = 10.0, interval: float = 0.1):
    """Call fn until it returns a truthy value; return it (or the last value)."""
    deadline = time.time() + timeout
    value = fn()
    while not value and time.time() < deadline:
        time.sleep(interval)
        value = fn()
    return value


def balance(gw) -> int:
    return gw.query("SELECT balance_nano FROM users WHERE id = ?", (DEMO_USER_ID,))[0][0]


def total_cost(gw) -> int:
    return gw.query(
        "SELECT COALESCE(SUM(cost_nano), 0) FROM request_logs WHERE user_id = ?", (DEMO_USER_ID,)
    )[0][0]


def accounting_consistent(gw) -> bool:
    return balance(gw) == INITIAL_BALANCE_NANO - total_cost(gw)


def settle(gw) -> int:
    """Waits until every queued usage row is written (balance == initial - sum of
    costs, stable over a flush interval) and returns the balance."""
    assert poll(lambda: accounting_consistent(gw)), "accounting never settled"
    time.sleep(0.4)
    assert poll(lambda: accounting_consistent(gw)), "accounting never settled"
    return balance(gw)


def max_rowid(gw) -> int:
    return gw.query("SELECT COALESCE(MAX(id), 0) FROM request_logs")[0][0]


def rows_since(gw, rowid: int) -> list:
    return gw.query("SELECT * FROM request_logs WHERE id > ? ORDER BY id", (rowid,))


def wait_rows_since(gw, rowid: int, n: int = 1, timeout: float = 10.0) -> list:
    rows = poll(lambda: (r if len(r := rows_since(gw, rowid)) >= n else None), timeout=timeout)
    assert rows, f"no request_logs row appeared after id {rowid}: {[dict(r) for r in rows_since(gw, rowid)]}"
    return rows


def wait_row(gw, request_id: str, timeout: float = 10.0):
    rows = poll(
        lambda: gw.query("SELECT * FROM request_logs WHERE request_id = ?", (request_id,)),
        timeout=timeout,
    )
    assert rows, f"no request_logs row for request {request_id}"
    return rows[0]


# --------------------------------------------------------------------------
# Raw HTTP
# --------------------------------------------------------------------------


def raw_post(url: str, body, headers: dict | None = None, timeout: float = 30):
    """POST (dict bodies are JSON-encoded); returns (status, headers, bytes)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def raw_stream(url: str, body: dict, headers: dict | None = None, timeout: float = 30):
    """POST and read the whole (possibly cut) body with http.client.

    Returns (status, headers, bytes received, error) where error is the exception that
    ended the body early (IncompleteRead, connection reset...) or None."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        conn.request("POST", u.path, body=json.dumps(body).encode(), headers=h)
        resp = conn.getresponse()
        got = b""
        err = None
        try:
            while True:
                chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                if not chunk:
                    break
                got += chunk
        except (http.client.IncompleteRead, ConnectionError, OSError) as e:
            if isinstance(e, http.client.IncompleteRead):
                got += e.partial
            err = e
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, got, err
    finally:
        conn.close()


def parse_sse(raw: bytes) -> list[tuple[str | None, str]]:
    """[(event name or None, data)] for each SSE event in ``raw``."""
    out = []
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event = None
        data = []
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" ") if line[5:6] == " " else line[5:])
        if event is None and not data:
            continue
        out.append((event, "\n".join(data)))
    return out


def error_of(payload) -> dict:
    """The ``error`` object of an OpenAI-shaped error body."""
    assert isinstance(payload, dict) and isinstance(payload.get("error"), dict), payload
    err = payload["error"]
    for k in ("message", "type", "param", "code"):
        assert k in err, f"missing {k!r} in {err}"
    return err


def anthropic_error_of(payload) -> dict:
    """The ``error`` object of an Anthropic-shaped error body."""
    assert isinstance(payload, dict), payload
    assert payload.get("type") == "error", payload
    err = payload.get("error")
    assert isinstance(err, dict) and isinstance(err.get("type"), str) and isinstance(err.get("message"), str), payload
    return err


# --------------------------------------------------------------------------
# Content normalisation (either wire shape of the same thing)
# --------------------------------------------------------------------------


def text_of(content) -> str:
    """Text of an OpenAI content (string or parts) or Anthropic content (string or blocks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in ("text", None)
        )
    raise AssertionError(f"unexpected content {content!r}")


def blocks_of(content) -> list[dict]:
    """Anthropic content as a list of blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    assert isinstance(content, list), content
    return content


# --------------------------------------------------------------------------
# Account API (optional in this build)
# --------------------------------------------------------------------------


def admin_token_or_skip(gw) -> str:
    """An access token for the demo administrator (who owns the demo key), printed by
    ``tokengate-server admin token`` run against the instance's data; skips when this
    build has no such command."""
    import re
    import subprocess

    import pytest

    from conftest import server_binary

    m = re.search(r"Admin email:\s+(\S+)", gw.stdout_path.read_text(errors="replace"))
    if not m:
        pytest.skip("the demo admin's email was not printed on stdout")
    args = [str(server_binary()), "admin", "token", "--email", m.group(1)]
    if gw.config_path is not None:
        args += ["--config", str(gw.config_path)]
    proc = subprocess.run(args, env=gw.env, capture_output=True, text=True, timeout=60)
    token = proc.stdout.strip().splitlines()[-1].strip() if proc.stdout.strip() else ""
    if proc.returncode != 0 or not token or " " in token:
        pytest.skip(f"`tokengate-server admin token` unavailable in this build: {proc.stderr.strip()[-300:]}")
    return token


def create_key_or_skip(gw, **fields) -> str:
    """Creates an API key for the demo account through ``POST /api/v1/me/keys`` (with
    the admin's access token) and returns its raw value; skips the test when this build
    cannot do that from the harness."""
    import pytest

    token = admin_token_or_skip(gw)
    body = {"name": f"e2e-{int(time.time() * 1000)}"}
    body.update(fields)
    status, _, raw = raw_post(f"{gw.url}/api/v1/me/keys", body, {"Authorization": f"Bearer {token}"})
    if status in (404, 405):
        pytest.skip(f"account API POST /api/v1/me/keys not implemented in this build (HTTP {status})")
    assert status == 201, (status, raw[:500])
    payload = json.loads(raw)
    assert isinstance(payload.get("raw"), str) and payload["raw"].startswith("sk-tg-"), payload
    return payload["raw"]


# --------------------------------------------------------------------------
# Shared request fixtures and assertions
# --------------------------------------------------------------------------

PROMPT = "Say hello to the gateway please"  # 6 words -> 6 prompt tokens at the fake
PROMPT_TOKENS = 6
SYSTEM = "You are terse."  # 3 words
SYSTEM_TOKENS = 3
WEATHER_Q = "What is the weather in Paris? [fault:tool]"  # 7 words
WEATHER_Q_TOKENS = 7
TOOL_RESULT = "Sunny, 22 C"  # 3 words
TOOL_RESULT_TOKENS = 3

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL_OAI = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Current weather in a city", "parameters": WEATHER_SCHEMA},
}
WEATHER_TOOL_ANTH = {"name": "get_weather", "description": "Current weather in a city", "input_schema": WEATHER_SCHEMA}

# A 1x1 transparent PNG.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
IMAGE_URL = "https://example.com/cat.png"


def assert_billed(gw, request_id: str, model: str, uncached_in: int, out: int, cache_read: int = 0, cache_write: int = 0):
    """The request-log row of ``request_id`` is a success billed exactly for this usage."""
    assert request_id, "response carried no x-request-id"
    row = wait_row(gw, request_id)
    expected = cost_nano(model, uncached_in, out, cache_read, cache_write)
    assert row["status"] == 200, dict(row)
    assert row["served_model"] == model, dict(row)
    assert row["tokens_in"] == uncached_in + cache_read + cache_write, dict(row)
    assert row["tokens_out"] == out, dict(row)
    assert row["cost_nano"] == expected, (dict(row), expected)
    return row


def assert_tokengate_key_not_forwarded(gw, rec) -> None:
    """The client's tokengate key never reaches an upstream."""
    flat = json.dumps(rec.headers)
    assert gw.api_key not in flat, f"tokengate key forwarded upstream: {rec.headers}"


def wait_row_where(gw, since_rowid: int, pred, timeout: float = 10.0):
    """The last request-log row after ``since_rowid`` matching ``pred(row)``."""
    rows = poll(lambda: [r for r in rows_since(gw, since_rowid) if pred(r)], timeout=timeout)
    assert rows, f"no matching request_logs row after id {since_rowid}: {[dict(r) for r in rows_since(gw, since_rowid)]}"
    return rows[-1]


def words_of(content) -> list[str]:
    """Words of an OpenAI/Anthropic content, whatever its shape (parts joined by a space)."""
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict)).split()
    return text_of(content).split()
