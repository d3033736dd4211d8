"""End-to-end tests driving tokengate with the official ``openai`` Python SDK."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import openai
import pytest

from conftest import (
    FAKE_COMPLETION_TOKENS,
    FAKE_CONTENT,
    INITIAL_BALANCE_NANO,
    PROVIDER_KEY,
)

DEMO_USER_ID = 1
# "0.15" / "0.60" USD per million tokens, in nano-USD per million tokens.
IN_PRICE_NANO_PER_M = 150_000_000
OUT_PRICE_NANO_PER_M = 600_000_000


def expected_cost_nano(tokens_in: int, tokens_out: int) -> int:
    total = tokens_in * IN_PRICE_NANO_PER_M + tokens_out * OUT_PRICE_NANO_PER_M
    return (total + 500_000) // 1_000_000  # round half up; values are non-negative


def poll(fn, timeout: float = 10.0, interval: float = 0.1):
    """Call fn until it returns a truthy value; return it (or the last value)."""
    deadline = time.time() + timeout
    value = fn()
    while not value and time.time() < deadline:
        time.sleep(interval)
        value = fn()
    return value


def raw_post(url: str, body: bytes, key: str | None, content_type: str = "application/json"):
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", content_type)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


def assert_error_shape(payload: dict) -> dict:
    assert set(payload.keys()) == {"error"}, payload
    err = payload["error"]
    for k in ("message", "type", "param", "code"):
        assert k in err, f"missing {k!r} in {err}"
    assert isinstance(err["message"], str) and err["message"]
    return err


def balance(gateway) -> int:
    return gateway.query("SELECT balance_nano FROM users WHERE id = ?", (DEMO_USER_ID,))[0][0]


def accounting_consistent(gateway) -> bool:
    cost = gateway.query(
        "SELECT COALESCE(SUM(cost_nano), 0) FROM request_logs WHERE user_id = ?", (DEMO_USER_ID,)
    )[0][0]
    return balance(gateway) == INITIAL_BALANCE_NANO - cost


PROMPT = "Say hello to the gateway please"  # 6 words -> 6 prompt tokens upstream
PROMPT_TOKENS = 6


# --------------------------------------------------------------------------
# Happy paths through the fake OpenAI-compatible upstream
# --------------------------------------------------------------------------


def test_chat_completion(client, fake_upstream):
    raw = client.chat.completions.with_raw_response.create(
        model="tokengate-test",
        messages=[{"role": "user", "content": PROMPT}],
    )
    assert raw.headers.get("x-tokengate-provider") == "fake"
    assert raw.headers.get("x-tokengate-model") == "fake/gpt-test"
    assert raw.headers.get("x-tokengate-attempts") == "1"
    resp = raw.parse()
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == FAKE_CONTENT
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == PROMPT_TOKENS
    assert resp.usage.completion_tokens == FAKE_COMPLETION_TOKENS
    assert resp.usage.total_tokens == PROMPT_TOKENS + FAKE_COMPLETION_TOKENS

    up = fake_upstream.last()
    assert up.path == "/v1/chat/completions"
    assert up.headers.get("authorization") == f"Bearer {PROVIDER_KEY}"
    assert up.body["model"] == "gpt-test"
    assert up.body["messages"] == [{"role": "user", "content": PROMPT}]


def test_chat_completion_concrete_model(client, fake_upstream):
    resp = client.chat.completions.create(
        model="fake/gpt-test",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": PROMPT},
        ],
        max_tokens=50,
        temperature=0.2,
    )
    assert resp.choices[0].message.content == FAKE_CONTENT
    assert resp.usage.prompt_tokens == PROMPT_TOKENS + 3
    up = fake_upstream.last()
    assert up.body["model"] == "gpt-test"
    assert up.body.get("max_tokens") == 50
    assert up.body.get("temperature") == 0.2


def test_streaming_without_usage(client, fake_upstream):
    stream = client.chat.completions.create(
        model="tokengate-test",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
    )
    parts = []
    chunks = 0
    for chunk in stream:
        chunks += 1
        assert chunk.object == "chat.completion.chunk"
        # No usage-only chunk (choices == []) and no usage must leak to the
        # client when it did not ask for it.
        assert chunk.choices, f"unexpected usage-only chunk: {chunk}"
        assert getattr(chunk, "usage", None) is None, f"usage leaked: {chunk}"
        delta = chunk.choices[0].delta
        if delta and delta.content:
            parts.append(delta.content)
    assert chunks >= 2
    assert "".join(parts) == FAKE_CONTENT

    up = fake_upstream.last()
    assert up.body["model"] == "gpt-test"
    assert up.body["stream"] is True
    assert up.headers.get("authorization") == f"Bearer {PROVIDER_KEY}"
    # The gateway always asks the upstream for usage so it can meter streams.
    assert up.body.get("stream_options", {}).get("include_usage") is True


def test_streaming_with_usage(client, fake_upstream):
    stream = client.chat.completions.create(
        model="tokengate-test",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    parts = []
    usage_chunks = []
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            if delta and delta.content:
                parts.append(delta.content)
        if chunk.usage is not None:
            usage_chunks.append(chunk)
    assert "".join(parts) == FAKE_CONTENT
    assert len(usage_chunks) == 1, usage_chunks
    final = usage_chunks[0]
    assert final.choices == []
    assert final.usage.prompt_tokens == PROMPT_TOKENS
    assert final.usage.completion_tokens == FAKE_COMPLETION_TOKENS

    up = fake_upstream.last()
    assert up.body.get("stream_options", {}).get("include_usage") is True


def test_models_list(client):
    models = {m.id: m for m in client.models.list()}
    assert "fake/gpt-test" in models, sorted(models)
    assert "tokengate-test" in models, sorted(models)
    for mid in ("fake/gpt-test", "tokengate-test"):
        extra = models[mid].model_extra or {}
        assert extra.get("input_usd_per_1k") == "0.00015", (mid, extra)
        assert extra.get("output_usd_per_1k") == "0.0006", (mid, extra)
    assert models["fake/gpt-test"].object == "model"


def test_mock_provider_demo_alias(client):
    raw = client.chat.completions.with_raw_response.create(
        model="tokengate-fast",
        messages=[{"role": "user", "content": "hi there"}],
    )
    assert raw.headers.get("x-tokengate-provider") == "mock"
    resp = raw.parse()
    assert resp.choices[0].message.content.startswith("Hello from the tokengate mock provider.")
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


# --------------------------------------------------------------------------
# Error paths
# --------------------------------------------------------------------------


def test_invalid_api_key(gateway):
    bad = openai.OpenAI(api_key="sk-tg-" + "x" * 43, base_url=gateway.base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as ei:
        bad.chat.completions.create(
            model="tokengate-test", messages=[{"role": "user", "content": "hi"}]
        )
    err = ei.value
    assert err.status_code == 401
    assert err.code == "invalid_api_key"
    assert isinstance(err.body, dict) and err.body.get("message") == "Invalid API key provided."
    assert "Invalid API key provided." in str(err)


def test_unknown_model(client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(
            model="no-such/model", messages=[{"role": "user", "content": "hi"}]
        )
    assert ei.value.status_code == 404
    assert ei.value.code == "model_not_found"


def test_malformed_json(gateway):
    status, headers, body = raw_post(
        f"{gateway.base_url}/chat/completions", b'{"model": "tokengate-test", "messages": [', gateway.api_key
    )
    assert status == 400, body
    assert headers.get("Content-Type", headers.get("content-type", "")).startswith("application/json")
    err = assert_error_shape(json.loads(body))
    assert err["type"] == "invalid_request_error"


def test_body_too_large(small_body_gateway):
    gw = small_body_gateway
    big = "word " * 400  # ~2000 bytes > 1000
    payload = json.dumps(
        {"model": "tokengate-fast", "messages": [{"role": "user", "content": big}]}
    ).encode()
    status, _, body = raw_post(f"{gw.base_url}/chat/completions", payload, gw.api_key)
    assert status == 413, body
    assert_error_shape(json.loads(body))

    sdk = openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url, max_retries=0)
    with pytest.raises(openai.APIStatusError) as ei:
        sdk.chat.completions.create(
            model="tokengate-fast", messages=[{"role": "user", "content": big}]
        )
    assert ei.value.status_code == 413

    # A small request still works on the same instance.
    ok = sdk.chat.completions.create(
        model="tokengate-fast", messages=[{"role": "user", "content": "hi"}]
    )
    assert ok.choices[0].message.content.startswith("Hello from the tokengate mock provider.")


def test_upstream_unreachable(client, gateway):
    # Let earlier requests settle so the balance snapshot is stable.
    assert poll(lambda: accounting_consistent(gateway)), "accounting never settled"
    time.sleep(0.6)
    before = balance(gateway)
    dead_rows_before = len(
        gateway.query("SELECT 1 FROM request_logs WHERE served_model = 'dead/gpt-dead' OR model = 'dead/gpt-dead'")
    )

    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(
            model="dead/gpt-dead", messages=[{"role": "user", "content": "hi"}]
        )
    assert ei.value.status_code == 502
    assert isinstance(ei.value, openai.InternalServerError)
    assert ei.value.type == "upstream_error" or ei.value.code == "upstream_error", ei.value.body

    rows = poll(
        lambda: (
            r
            if len(
                r := gateway.query(
                    "SELECT * FROM request_logs WHERE model = 'dead/gpt-dead' ORDER BY rowid"
                )
            )
            > dead_rows_before
            else None
        )
    )
    assert rows, "no request_logs row for the failed upstream call"
    row = rows[-1]
    assert row["status"] == 502
    assert row["cost_nano"] == 0
    assert row["tokens_in"] == 0 and row["tokens_out"] == 0
    assert balance(gateway) == before


# --------------------------------------------------------------------------
# Metering / billing (runs last: checks all traffic generated above)
# --------------------------------------------------------------------------


def test_metering_and_balance(client, gateway):
    # One more known request so this test stands on its own.
    resp = client.chat.completions.create(
        model="tokengate-test", messages=[{"role": "user", "content": PROMPT}]
    )
    assert resp.usage.prompt_tokens == PROMPT_TOKENS

    def fake_rows():
        rows = gateway.query(
            "SELECT * FROM request_logs WHERE provider = 'fake' AND user_id = ? ORDER BY rowid",
            (DEMO_USER_ID,),
        )
        return rows if len(rows) >= 5 else None

    rows = poll(fake_rows)
    assert rows, gateway.query("SELECT * FROM request_logs")
    # Non-stream + 2 streams via the alias, 1 concrete, 1 here.
    streams = [r for r in rows if r["stream"]]
    assert len(streams) >= 2
    for r in rows:
        assert r["status"] == 200, dict(r)
        assert r["served_model"] == "fake/gpt-test", dict(r)
        assert r["model"] in ("tokengate-test", "fake/gpt-test"), dict(r)
        assert r["tokens_in"] in (PROMPT_TOKENS, PROMPT_TOKENS + 3), dict(r)
        assert r["tokens_out"] == FAKE_COMPLETION_TOKENS, dict(r)
        assert r["cost_nano"] == expected_cost_nano(r["tokens_in"], r["tokens_out"]), dict(r)
        assert r["cost_nano"] > 0
        assert r["key_id"] is not None

    # Streams are metered from the upstream usage chunk, whether or not the
    # client asked to see it.
    for r in streams:
        assert r["tokens_in"] == PROMPT_TOKENS and r["tokens_out"] == FAKE_COMPLETION_TOKENS

    assert poll(lambda: accounting_consistent(gateway)), (
        balance(gateway),
        gateway.query("SELECT SUM(cost_nano) FROM request_logs WHERE user_id = ?", (DEMO_USER_ID,))[0][0],
    )
    bal = balance(gateway)
    total_cost = gateway.query(
        "SELECT SUM(cost_nano) FROM request_logs WHERE user_id = ?", (DEMO_USER_ID,)
    )[0][0]
    assert total_cost > 0
    assert bal == INITIAL_BALANCE_NANO - total_cost
    ledger_sum = gateway.query(
        "SELECT SUM(amount_nano) FROM ledger_entries WHERE user_id = ?", (DEMO_USER_ID,)
    )[0][0]
    assert ledger_sum == bal
