"""Contract statuses as the SDKs see them, fallback through aliases, and upstream faults
injected by the fake (status, delay past the per-attempt timeout, reset, cut streams,
malformed bodies): who is charged what, and that nothing is retried once a byte reached
the client."""

from __future__ import annotations

import json
import math
import time
import urllib.request

import anthropic
import httpx2
import openai
import pytest

from conftest import SLOW_DELAY_MS, UPSTREAM_TIMEOUT_MS
from e2e_helpers import (
    PROMPT,
    PROMPT_TOKENS,
    assert_billed,
    cost_nano,
    create_key_or_skip,
    error_of,
    max_rowid,
    parse_sse,
    raw_post,
    raw_stream,
    settle,
    wait_row,
    wait_row_where,
)
from fake_upstream import FAKE_COMPLETION_TOKENS, FAKE_CONTENT, FAKE_PIECES

OAI = "fakeoai/gpt-test"
ANTH = "fakeanth/claude-test"
BAD_KEY = "sk-tg-" + "x" * 43


def headers_of(raw) -> dict:
    return {k.lower(): v for k, v in raw.headers.items()}


def healthy(gw) -> bool:
    with urllib.request.urlopen(f"{gw.url}/healthz", timeout=5) as r:
        return r.status == 200


def assert_still_serving(gw, oai) -> None:
    assert healthy(gw)
    r = oai.chat.completions.create(model=OAI, messages=[{"role": "user", "content": PROMPT}])
    assert r.choices[0].message.content == FAKE_CONTENT


def assert_upstream_error(e: openai.APIStatusError, statuses=(502, 503, 504)) -> None:
    assert e.status_code in statuses, (e.status_code, e.body)
    assert isinstance(e, openai.InternalServerError)
    assert e.code == "upstream_error", e.body
    assert e.type == "api_error", e.body


def assert_failed_uncharged(gw, since_rowid: int, model: str, status: int, balance_before: int) -> None:
    row = wait_row_where(gw, since_rowid, lambda r: r["model"] == model and r["status"] != 200)
    assert row["status"] == status, dict(row)
    assert row["cost_nano"] == 0 and row["tokens_in"] == 0 and row["tokens_out"] == 0, dict(row)
    assert settle(gw) == balance_before


# --------------------------------------------------------------------------
# Contract statuses -> SDK exception classes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("key", [BAD_KEY, "not-a-key", "sk-tg-short"])
def test_401_invalid_key(multi_gateway, key):
    bad = openai.OpenAI(api_key=key, base_url=multi_gateway.base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as ei:
        bad.chat.completions.create(model=OAI, messages=[{"role": "user", "content": "hi"}])
    assert ei.value.status_code == 401
    assert ei.value.code == "invalid_api_key"
    assert ei.value.type == "authentication_error"
    assert ei.value.message.endswith("Invalid API key provided.") or "Invalid API key provided." in str(ei.value)


def test_401_missing_key(multi_gateway):
    status, _, body = raw_post(
        f"{multi_gateway.base_url}/chat/completions", {"model": OAI, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert status == 401
    err = error_of(json.loads(body))
    assert err["code"] == "invalid_api_key" and err["message"] == "Invalid API key provided."


def test_403_model_not_allowed(multi_gateway):
    raw_key = create_key_or_skip(multi_gateway, models=[OAI])
    client = openai.OpenAI(api_key=raw_key, base_url=multi_gateway.base_url, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as ei:
        client.chat.completions.create(model=ANTH, messages=[{"role": "user", "content": "hi"}])
    assert ei.value.status_code == 403
    assert ei.value.code == "model_not_allowed" and ei.value.type == "permission_error"
    ok = client.chat.completions.create(model=OAI, messages=[{"role": "user", "content": "hi"}])
    assert ok.choices[0].message.content == FAKE_CONTENT


def test_429_key_rate_limit(multi_gateway):
    raw_key = create_key_or_skip(multi_gateway, rpm=1)
    client = openai.OpenAI(api_key=raw_key, base_url=multi_gateway.base_url, max_retries=0)
    client.chat.completions.create(model=OAI, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model=OAI, messages=[{"role": "user", "content": "hi"}])
    assert ei.value.status_code == 429
    assert ei.value.code == "rate_limit_exceeded" and ei.value.type == "rate_limit_error"
    assert ei.value.response.headers.get("retry-after"), "429 must carry Retry-After"


def test_404_unknown_model_and_route(oai, multi_gateway):
    with pytest.raises(openai.NotFoundError) as ei:
        oai.chat.completions.create(model="no-such/model", messages=[{"role": "user", "content": "hi"}])
    assert ei.value.code == "model_not_found" and ei.value.type == "invalid_request_error"
    status, _, body = raw_post(f"{multi_gateway.base_url}/no/such/route", {}, {"Authorization": f"Bearer {multi_gateway.api_key}"})
    assert status == 404
    error_of(json.loads(body))


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "fakeoai/gpt-test", "messages": [',
        b"[]",
        json.dumps({"model": OAI}).encode(),
        json.dumps({"model": OAI, "messages": []}).encode(),
        json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(),
    ],
)
def test_400_malformed(multi_gateway, upstream, body):
    status, headers, raw = raw_post(
        f"{multi_gateway.base_url}/chat/completions", body, {"Authorization": f"Bearer {multi_gateway.api_key}"}
    )
    assert status == 400, raw
    assert headers.get("content-type", "").startswith("application/json")
    assert error_of(json.loads(raw))["type"] == "invalid_request_error"
    assert upstream.count() == 0


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_400_upstream_passthrough(oai, upstream, fault_model, kind):
    model = fault_model(kind)
    with pytest.raises(openai.BadRequestError) as ei:
        oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi [fault:status:400]"}])
    assert ei.value.status_code == 400
    assert ei.value.type == "invalid_request_error"
    assert upstream.count() == 1


def test_402_insufficient_balance(oai, multi_gateway, upstream):
    # The worst case of max_tokens=1,000,000 at $15/M output is $15: more than the $5 balance.
    before = settle(multi_gateway)
    with pytest.raises(openai.APIStatusError) as ei:
        oai.chat.completions.create(model=ANTH, messages=[{"role": "user", "content": "hi"}], max_tokens=1_000_000)
    assert ei.value.status_code == 402
    assert ei.value.code == "insufficient_balance" and ei.value.type == "insufficient_quota"
    assert upstream.count() == 0
    assert settle(multi_gateway) == before


@pytest.mark.parametrize("path", ["chat/completions", "embeddings", "messages"])
def test_413_body_too_large(small_body_gateway, path):
    gw = small_body_gateway
    big = "word " * 400
    body = {
        "chat/completions": {"model": "mock/fast-1", "messages": [{"role": "user", "content": big}]},
        "embeddings": {"model": "mock/fast-1", "input": big},
        "messages": {"model": "mock/fast-1", "max_tokens": 10, "messages": [{"role": "user", "content": big}]},
    }[path]
    status, _, raw = raw_post(f"{gw.base_url}/{path}", body, {"Authorization": f"Bearer {gw.api_key}"})
    assert status == 413, raw[:300]
    payload = json.loads(raw)
    if path == "messages":
        assert payload.get("type") == "error" and payload["error"]["type"] == "request_too_large", payload
    else:
        error_of(payload)
    if path == "chat/completions":
        sdk = openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url, max_retries=0)
        with pytest.raises(openai.APIStatusError) as ei:
            sdk.chat.completions.create(model="mock/fast-1", messages=[{"role": "user", "content": big}])
        assert ei.value.status_code == 413


def test_413_connection_close(small_body_gateway):
    """A 413 decided from Content-Length leaves the body unread, so the server cannot
    reuse the connection: it must say so (`Connection: close`), or keep-alive clients
    (httpx in both SDKs) intermittently send their next request into a closed socket
    ("Server disconnected without sending a response")."""
    import socket

    gw = small_body_gateway
    body = json.dumps({"model": "mock/fast-1", "messages": [{"role": "user", "content": "word " * 400}]}).encode()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n"
            f"Authorization: Bearer {gw.api_key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head)  # the body is never sent: the status must not depend on it
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        status_line, _, rest = got.partition(b"\r\n")
        assert b" 413 " in status_line, got[:300]
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.decode().partition(":") for line in rest.split(b"\r\n\r\n")[0].split(b"\r\n"))
        }
        # Read the rest of the 413 body, then see whether the server hangs up.
        sock.settimeout(1.0)
        closed = False
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
        except socket.timeout:
            pass
        if closed:
            assert headers.get("connection", "").lower() == "close", (
                f"the server closed the connection after a 413 without `Connection: close`: {headers}"
            )


# --------------------------------------------------------------------------
# Upstream failures with nowhere to fall back to
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("status", [429, 500, 503])
def test_upstream_status_without_fallback(oai, multi_gateway, upstream, fault_model, kind, status):
    """No other target: the contract's 502/503/504 upstream_error (an upstream 429 is not
    the client's rate limit), logged, nothing charged."""
    model = fault_model(kind)
    bal = settle(multi_gateway)
    before = max_rowid(multi_gateway)
    with pytest.raises(openai.APIStatusError) as ei:
        oai.chat.completions.create(model=model, messages=[{"role": "user", "content": f"hi [fault:status:{status}]"}])
    assert_upstream_error(ei.value)
    assert upstream.count() == 1
    assert_failed_uncharged(multi_gateway, before, model, ei.value.status_code, bal)


def test_upstream_bad_provider_key_is_not_a_client_401(oai, multi_gateway, upstream):
    """The upstream refusing *tokengate's provider key* must not look like the client's
    key being invalid."""
    with pytest.raises(openai.APIStatusError) as ei:
        oai.chat.completions.create(model="wrongkey/gpt-wrongkey-2", messages=[{"role": "user", "content": "hi"}])
    assert not isinstance(ei.value, openai.AuthenticationError)
    assert_upstream_error(ei.value)
    assert upstream.last().headers.get("authorization") == "Bearer sk-wrong-provider-key"


# --------------------------------------------------------------------------
# Fallback through aliases (before the first byte only)
# --------------------------------------------------------------------------

FALLBACKS = {
    # alias: (served model, served provider, upstream requests recorded by the fake)
    "fallback-dead": (OAI, "fakeoai", 1),  # first target: closed port, never reaches the fake
    "fallback-dead-anth": (ANTH, "fakeanth", 1),
    "fallback-503": (ANTH, "fakeanth", 2),
    "fallback-429": (OAI, "fakeoai", 2),
    "fallback-wrongkey": (ANTH, "fakeanth", 2),
    "fallback-slow": (OAI, "fakeoai", 2),  # first target: headers later than the per-attempt timeout
}


@pytest.mark.parametrize("alias", list(FALLBACKS))
def test_fallback(oai, multi_gateway, upstream, alias):
    served, provider, recorded = FALLBACKS[alias]
    raw = oai.chat.completions.with_raw_response.create(model=alias, messages=[{"role": "user", "content": PROMPT}])
    h = headers_of(raw)
    assert h.get("x-tokengate-attempts") == "2", h
    assert h.get("x-tokengate-provider") == provider
    assert h.get("x-tokengate-model") == served
    r = raw.parse()
    assert r.choices[0].message.content == FAKE_CONTENT
    assert upstream.wait_for_count(recorded) == recorded
    assert upstream.count() == recorded, upstream.counts()
    row = assert_billed(multi_gateway, h.get("x-request-id"), served, PROMPT_TOKENS, FAKE_COMPLETION_TOKENS)
    assert row["attempts"] == 2, dict(row)
    assert row["model"] == alias and row["provider"] == provider, dict(row)


def test_fallback_stream(oai, multi_gateway, upstream):
    raw = oai.chat.completions.with_raw_response.create(
        model="fallback-503", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    h = headers_of(raw)
    assert h.get("x-tokengate-attempts") == "2" and h.get("x-tokengate-provider") == "fakeanth"
    text = "".join((c.choices[0].delta.content or "") for c in raw.parse() if c.choices)
    assert text == FAKE_CONTENT
    row = assert_billed(multi_gateway, h.get("x-request-id"), ANTH, PROMPT_TOKENS, FAKE_COMPLETION_TOKENS)
    assert row["attempts"] == 2


def test_fallback_messages_endpoint(anth, multi_gateway, upstream):
    raw = anth.messages.with_raw_response.create(
        model="fallback-dead-messages", max_tokens=50, messages=[{"role": "user", "content": PROMPT}]
    )
    h = headers_of(raw)
    assert h.get("x-tokengate-attempts") == "2" and h.get("x-tokengate-provider") == "fakeoai"
    assert raw.parse().content[0].text == FAKE_CONTENT
    row = assert_billed(multi_gateway, h.get("x-request-id"), OAI, PROMPT_TOKENS, FAKE_COMPLETION_TOKENS)
    assert row["attempts"] == 2


# --------------------------------------------------------------------------
# No retry after the first byte; cut streams are billed for what was delivered
# --------------------------------------------------------------------------

CUT_PROMPT = "Say hello [fault:cut:2]"  # 3 words
DELIVERED = "".join(FAKE_PIECES[:2])


def consume_openai(stream) -> tuple[str, list, Exception | None]:
    text, finishes, err = "", [], None
    try:
        for c in stream:
            for ch in c.choices:
                text += ch.delta.content or ""
                if ch.finish_reason:
                    finishes.append(ch.finish_reason)
    except openai.APIError as e:
        err = e
    return text, finishes, err


@pytest.mark.parametrize("alias,first", [("pair-oai-first", "fakeoai/pair"), ("pair-anth-first", "fakeanth/pair")])
def test_no_retry_after_first_byte_chat(oai, multi_gateway, upstream, alias, first):
    before = max_rowid(multi_gateway)
    raw = oai.chat.completions.with_raw_response.create(
        model=alias, messages=[{"role": "user", "content": CUT_PROMPT}], stream=True
    )
    assert headers_of(raw).get("x-tokengate-model") == first
    text, finishes, err = consume_openai(raw.parse())
    assert err is not None, f"a stream cut upstream must fail for the client (got {text!r}, finish {finishes})"
    assert finishes == []
    assert text == DELIVERED
    time.sleep(0.5)  # a late retry would show up here
    assert upstream.count() == 1, upstream.counts()
    row = wait_row_where(multi_gateway, before, lambda r: r["model"] == alias)
    assert row["status"] != 200 and row["attempts"] == 1, dict(row)


@pytest.mark.parametrize("alias,first", [("pair-oai-first", "fakeoai/pair"), ("pair-anth-first", "fakeanth/pair")])
def test_no_retry_after_first_byte_messages(anth, multi_gateway, upstream, alias, first):
    before = max_rowid(multi_gateway)
    text = ""
    with pytest.raises((anthropic.APIError, httpx2.TransportError)):
        with anth.messages.stream(model=alias, max_tokens=100, messages=[{"role": "user", "content": CUT_PROMPT}]) as s:
            assert s.response.headers.get("x-tokengate-model") == first
            for t in s.text_stream:
                text += t
            # a stream that ends without message_stop must not pass for a complete one
            final = s.get_final_message()
            assert final.stop_reason is not None, "stream ended without message_delta"
    assert text == DELIVERED
    time.sleep(0.5)
    assert upstream.count() == 1, upstream.counts()
    row = wait_row_where(multi_gateway, before, lambda r: r["model"] == alias)
    assert row["status"] != 200 and row["attempts"] == 1, dict(row)


@pytest.mark.parametrize("model", [OAI, ANTH])
def test_complete_stream_closed_by_client_after_done(oai, multi_gateway, upstream, model):
    """The openai SDK stops reading at `data: [DONE]` and closes the connection; if the
    upstream's body ends a little later (here 1.5 s), the request was still complete:
    logged 200 and billed on the reported usage, not as a client disconnect (499)."""
    raw = oai.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": PROMPT + " [fault:linger:1500]"}], stream=True
    )
    text = "".join((c.choices[0].delta.content or "") for c in raw.parse() if c.choices)
    assert text == FAKE_CONTENT
    row = wait_row(multi_gateway, headers_of(raw).get("x-request-id"), timeout=15)
    assert row["status"] == 200, dict(row)
    assert (row["tokens_in"], row["tokens_out"]) == (PROMPT_TOKENS + 1, FAKE_COMPLETION_TOKENS), dict(row)
    assert row["cost_nano"] == cost_nano(model, PROMPT_TOKENS + 1, FAKE_COMPLETION_TOKENS), dict(row)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_cut_stream_billing(multi_gateway, upstream, fault_model, kind):
    """README "Billing rules": a stream cut upstream ends with an error event and bills
    what was delivered — the upstream's usage if it reported any (Anthropic's
    message_start: the exact prompt), else the prompt at 4 body bytes per token; output
    at 4 characters per token but never more tokens than the events that carried text."""
    model = fault_model(kind)
    bal = settle(multi_gateway)
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": CUT_PROMPT}]}
    status, headers, raw, _ = raw_stream(
        f"{multi_gateway.base_url}/chat/completions", body, {"Authorization": f"Bearer {multi_gateway.api_key}"}
    )
    assert status == 200
    events = [d for _, d in parse_sse(raw)]
    assert any(d.startswith("{") and "error" in json.loads(d) for d in events), f"no error event: {events[-3:]}"
    row = wait_row(multi_gateway, headers.get("x-request-id"))
    delivered_events = 2
    out = min(math.ceil(len(DELIVERED) / 4), delivered_events)
    if kind == "anthropic":
        tokens_in = len(CUT_PROMPT.split())  # message_start reported it
    else:
        tokens_in = math.ceil(len(json.dumps(body).encode()) / 4)
    expected = cost_nano(model, tokens_in, out)
    assert row["status"] != 200, dict(row)
    assert (row["tokens_in"], row["tokens_out"], row["cost_nano"]) == (tokens_in, out, expected), dict(row)
    assert settle(multi_gateway) == bal - expected


# --------------------------------------------------------------------------
# Timeout, reset, cut body, malformed answers
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_delay_past_timeout_is_504_uncharged(oai, multi_gateway, upstream, fault_model, kind):
    model = fault_model(kind)
    bal = settle(multi_gateway)
    before = max_rowid(multi_gateway)
    t0 = time.time()
    with pytest.raises(openai.APIStatusError) as ei:
        oai.chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"hi [fault:delay:{SLOW_DELAY_MS}]"}]
        )
    elapsed = time.time() - t0
    assert ei.value.status_code == 504, (ei.value.status_code, ei.value.body)
    assert_upstream_error(ei.value, (504,))
    assert UPSTREAM_TIMEOUT_MS / 1000 - 0.2 <= elapsed < SLOW_DELAY_MS / 1000, elapsed
    assert upstream.count() == 1
    assert_failed_uncharged(multi_gateway, before, model, 504, bal)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_reset_is_502_uncharged(oai, multi_gateway, upstream, fault_model, kind, stream):
    model = fault_model(kind)
    bal = settle(multi_gateway)
    before = max_rowid(multi_gateway)
    with pytest.raises(openai.APIStatusError) as ei:
        r = oai.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi [fault:reset]"}], stream=stream
        )
        if stream:
            list(r)
    assert_upstream_error(ei.value, (502,))
    assert upstream.count() == 1
    assert_failed_uncharged(multi_gateway, before, model, 502, bal)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_cut_json_body_is_502_uncharged(oai, multi_gateway, upstream, fault_model, kind):
    model = fault_model(kind)
    bal = settle(multi_gateway)
    before = max_rowid(multi_gateway)
    with pytest.raises(openai.APIStatusError) as ei:
        oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi [fault:cut:20]"}])
    assert_upstream_error(ei.value, (502,))
    assert_failed_uncharged(multi_gateway, before, model, 502, bal)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_malformed_json_is_clean_error(oai, multi_gateway, upstream, fault_model, kind):
    model = fault_model(kind)
    bal = settle(multi_gateway)
    before = max_rowid(multi_gateway)
    with pytest.raises(openai.APIStatusError) as ei:
        oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi [fault:malformed]"}])
    assert_upstream_error(ei.value, (502,))
    assert_failed_uncharged(multi_gateway, before, model, 502, bal)
    assert_still_serving(multi_gateway, oai)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_malformed_stream_is_clean_error(oai, multi_gateway, upstream, fault_model, kind):
    """An SSE event with invalid JSON: the client sees an API error (an error event or
    status), never a parser crash on garbage nor a silently empty success; the request
    is not logged as a success; the server keeps serving."""
    model = fault_model(kind)
    text, finishes, err = "", [], None
    raw = oai.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi [fault:malformed]"}], stream=True
    )
    try:
        for c in raw.parse():
            for ch in c.choices:
                text += ch.delta.content or ""
                if ch.finish_reason:
                    finishes.append(ch.finish_reason)
    except openai.APIError as e:
        err = e
    except json.JSONDecodeError as e:  # garbage relayed verbatim
        pytest.fail(f"malformed upstream event relayed to the client: {e}")
    assert err is not None, f"a malformed upstream stream must fail cleanly (got {text!r}, {finishes})"
    assert finishes == []
    row = wait_row(multi_gateway, headers_of(raw).get("x-request-id"))
    assert row["status"] != 200, f"a malformed upstream stream was logged as a success: {dict(row)}"
    # No text reached the client: "A request that fails before any output costs nothing."
    assert row["cost_nano"] == 0, dict(row)
    assert_still_serving(multi_gateway, oai)


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_malformed_stream_is_clean_error_messages(anth, oai, multi_gateway, upstream, fault_model, kind):
    """Same on /v1/messages with the anthropic SDK: an `error` event or a broken
    connection, not garbage and not a complete-looking message."""
    model = fault_model(kind)
    try:
        with anth.messages.stream(
            model=model, max_tokens=50, messages=[{"role": "user", "content": "hi [fault:malformed]"}]
        ) as s:
            for _ in s.text_stream:
                pass
            final = s.get_final_message()
    except (anthropic.APIError, httpx2.TransportError):
        pass
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        pytest.fail(f"malformed upstream event relayed to the client: {e!r}")
    else:
        pytest.fail(f"a malformed upstream stream passed for a complete message: {final}")
    assert_still_serving(multi_gateway, oai)


def test_server_healthy_at_the_end(multi_gateway, oai):
    assert_still_serving(multi_gateway, oai)
    with urllib.request.urlopen(f"{multi_gateway.url}/readyz", timeout=5) as r:
        assert r.status == 200
