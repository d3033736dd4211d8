"""`POST /v1/embeddings` with the ``openai`` SDK: float and base64 encodings, usage,
request-log row and balance debit (metered on input tokens)."""

from __future__ import annotations

import json

import openai
import pytest

from e2e_helpers import (
    balance,
    cost_nano,
    error_of,
    max_rowid,
    raw_post,
    rows_since,
    settle,
    wait_row,
    wait_row_where,
)
from fake_upstream import OPENAI_KEY, decode_embedding_b64, fake_embedding

EMBED = "fakeoai/embed-test"
TEXT = "The quick brown fox jumps"  # 5 words -> 5 tokens; 5 x $0.0125/M = 62.5 nano -> 63
TEXT_TOKENS = 5


def headers_of(raw) -> dict:
    return {k.lower(): v for k, v in raw.headers.items()}


def test_float(oai, upstream, multi_gateway):
    raw = oai.embeddings.with_raw_response.create(model=EMBED, input=TEXT, encoding_format="float")
    h = headers_of(raw)
    assert h.get("x-tokengate-provider") == "fakeoai"
    assert h.get("x-tokengate-model") == EMBED
    assert h.get("x-tokengate-attempts") == "1"
    r = raw.parse()
    assert r.object == "list"
    assert len(r.data) == 1 and r.data[0].index == 0 and r.data[0].object == "embedding"
    assert r.data[0].embedding == fake_embedding(TEXT)
    assert r.usage.prompt_tokens == TEXT_TOKENS and r.usage.total_tokens == TEXT_TOKENS

    rec = upstream.last()
    assert upstream.count() == 1
    assert rec.path == "/v1/embeddings"
    assert rec.headers.get("authorization") == f"Bearer {OPENAI_KEY}"
    assert rec.body["model"] == "embed-test"
    assert rec.body["input"] == TEXT

    row = wait_row(multi_gateway, h.get("x-request-id"))
    assert row["status"] == 200, dict(row)
    assert row["endpoint"] == "/v1/embeddings", dict(row)
    assert row["served_model"] == EMBED and row["provider"] == "fakeoai", dict(row)
    assert row["tokens_in"] == TEXT_TOKENS and row["tokens_out"] == 0, dict(row)
    assert row["cost_nano"] == cost_nano(EMBED, TEXT_TOKENS, 0) == 63, dict(row)


def test_sdk_default_is_base64_decoded(oai, upstream):
    """Without encoding_format the SDK asks for base64 and decodes it itself."""
    r = oai.embeddings.create(model=EMBED, input=TEXT)
    assert upstream.last().body.get("encoding_format", "base64") in ("base64", "float")
    assert r.data[0].embedding == fake_embedding(TEXT)
    assert r.usage.prompt_tokens == TEXT_TOKENS


def test_explicit_base64_matches_float(oai):
    b = oai.embeddings.create(model=EMBED, input=TEXT, encoding_format="base64")
    assert isinstance(b.data[0].embedding, str), b.data[0].embedding
    f = oai.embeddings.create(model=EMBED, input=TEXT, encoding_format="float")
    assert decode_embedding_b64(b.data[0].embedding) == f.data[0].embedding == fake_embedding(TEXT)
    assert b.usage.prompt_tokens == f.usage.prompt_tokens == TEXT_TOKENS


def test_batch_and_dimensions(oai, upstream):
    inputs = ["one two three", "four five", "six"]
    r = oai.embeddings.create(model=EMBED, input=inputs, encoding_format="float")
    assert [d.index for d in r.data] == [0, 1, 2]
    assert [d.embedding for d in r.data] == [fake_embedding(t) for t in inputs]
    assert r.usage.prompt_tokens == 6
    assert upstream.last().body["input"] == inputs

    r = oai.embeddings.create(model=EMBED, input="one two", dimensions=4, encoding_format="float")
    assert upstream.last().body.get("dimensions") == 4
    assert r.data[0].embedding == fake_embedding("one two", 4)


def test_balance_debit(oai, multi_gateway):
    before = settle(multi_gateway)
    since = max_rowid(multi_gateway)
    raw = oai.embeddings.with_raw_response.create(model=EMBED, input=[TEXT, "one two three four"], encoding_format="float")
    assert raw.parse().usage.prompt_tokens == 9
    row = wait_row(multi_gateway, headers_of(raw).get("x-request-id"))
    expected = cost_nano(EMBED, 9, 0)  # 112.5 -> 113
    assert expected == 113
    assert row["cost_nano"] == expected, dict(row)
    # Requests of earlier tests that were still running upstream (a client that gave up
    # does not stop its request) may be charged meanwhile: the balance moves by exactly
    # the rows written since, this one's 113 among them.
    after = settle(multi_gateway)
    others = sum(r["cost_nano"] for r in rows_since(multi_gateway, since) if r["id"] != row["id"])
    assert after == before - expected - others
    ledger = multi_gateway.query("SELECT SUM(amount_nano) FROM ledger_entries WHERE user_id = 1")[0][0]
    assert ledger == balance(multi_gateway)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def test_bad_key(multi_gateway):
    bad = openai.OpenAI(api_key="sk-tg-" + "x" * 43, base_url=multi_gateway.base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as ei:
        bad.embeddings.create(model=EMBED, input=TEXT)
    assert ei.value.code == "invalid_api_key"


def test_unknown_model(oai):
    with pytest.raises(openai.NotFoundError) as ei:
        oai.embeddings.create(model="no-such/embedder", input=TEXT)
    assert ei.value.code == "model_not_found"


def test_malformed_body(multi_gateway):
    status, _, body = raw_post(
        f"{multi_gateway.base_url}/embeddings", b'{"model": "fakeoai/embed-test", "input": [', {"Authorization": f"Bearer {multi_gateway.api_key}"}
    )
    assert status == 400
    assert error_of(json.loads(body))["type"] == "invalid_request_error"


def test_chat_only_provider_refused_cleanly(oai, upstream):
    """The anthropic-kind provider has no embeddings endpoint: a clean 4xx, nothing sent."""
    with pytest.raises(openai.APIStatusError) as ei:
        oai.embeddings.create(model="fakeanth/claude-test", input=TEXT)
    assert 400 <= ei.value.status_code < 500, ei.value.status_code
    assert upstream.count() == 0


def test_upstream_failure_costs_nothing(oai, multi_gateway):
    before_balance = settle(multi_gateway)
    before = max_rowid(multi_gateway)
    with pytest.raises(openai.InternalServerError) as ei:
        oai.embeddings.create(model=EMBED, input="broken [fault:status:500]")
    assert ei.value.status_code in (502, 503, 504)
    assert ei.value.code == "upstream_error"
    row = wait_row_where(multi_gateway, before, lambda r: r["model"] == EMBED)
    assert row["status"] == ei.value.status_code and row["cost_nano"] == 0, dict(row)
    assert settle(multi_gateway) == before_balance
