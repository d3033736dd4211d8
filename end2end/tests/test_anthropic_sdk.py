"""`POST /v1/messages` driven with the official ``anthropic`` SDK (base_url = the tokengate
root, api_key = the demo key): natively against the anthropic-kind provider, translated
against the openai-kind provider and the built-in mock provider."""

from __future__ import annotations

import json
import re

import anthropic
import pytest

from e2e_helpers import (
    IMAGE_URL,
    PNG_B64,
    PROMPT,
    PROMPT_TOKENS,
    SYSTEM,
    SYSTEM_TOKENS,
    TOOL_RESULT,
    TOOL_RESULT_TOKENS,
    WEATHER_Q,
    WEATHER_Q_TOKENS,
    WEATHER_TOOL_ANTH,
    anthropic_error_of,
    assert_billed,
    assert_tokengate_key_not_forwarded,
    blocks_of,
    create_key_or_skip,
    max_rowid,
    parse_sse,
    raw_post,
    raw_stream,
    settle,
    balance,
    text_of,
    wait_row_where,
    words_of,
)
from fake_upstream import (
    ANTHROPIC_KEY,
    ANTHROPIC_TOOL_PREAMBLE,
    ANTHROPIC_TOOL_USE_ID,
    ANTHROPIC_VERSION,
    FAKE_COMPLETION_TOKENS,
    FAKE_CONTENT,
    OPENAI_KEY,
    TOOL_ARGS,
    TOOL_COMPLETION_TOKENS,
    TOOL_NAME,
)

ANTH = "fakeanth/claude-test"
OAI = "fakeoai/gpt-test"
MOCK = "mock/fast-1"

# Non-ping events of a well-formed Anthropic stream.
STREAM_SHAPE = re.compile(
    r"^message_start( content_block_start( content_block_delta)* content_block_stop)+ message_delta message_stop$"
)


def headers_of(raw) -> dict:
    return {k.lower(): v for k, v in raw.headers.items()}


def assert_stream_events(body: bytes) -> list[tuple[str, dict]]:
    """Checks the exact Anthropic SSE framing and returns [(event, data)]."""
    events = parse_sse(body)
    out = []
    for name, data in events:
        assert name is not None, f"event without an `event:` line: {data!r}"
        obj = json.loads(data)
        assert obj["type"] == name, (name, obj)
        out.append((name, obj))
    names = [n for n, _ in out]
    assert "error" not in names, out
    assert "ping" in names, f"no ping event: {names}"
    assert STREAM_SHAPE.match(" ".join(n for n in names if n != "ping")), names
    # Content block indexes: start/delta/stop agree and count up from 0.
    open_index = None
    next_index = 0
    for n, o in out:
        if n == "content_block_start":
            assert o["index"] == next_index and open_index is None, out
            open_index = o["index"]
        elif n == "content_block_delta":
            assert o["index"] == open_index, out
        elif n == "content_block_stop":
            assert o["index"] == open_index, out
            open_index, next_index = None, next_index + 1
    return out


# --------------------------------------------------------------------------
# Native: anthropic inbound -> anthropic-kind provider
# --------------------------------------------------------------------------


def test_native_plain(anth, upstream, multi_gateway):
    raw = anth.messages.with_raw_response.create(
        model=ANTH,
        max_tokens=100,
        system=SYSTEM,
        messages=[{"role": "user", "content": PROMPT}],
        extra_body={"temperature": 0.2},  # not a keyword of this SDK version, still API
    )
    h = headers_of(raw)
    assert h.get("x-tokengate-provider") == "fakeanth"
    assert h.get("x-tokengate-model") == ANTH
    assert h.get("x-tokengate-attempts") == "1"
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == FAKE_CONTENT
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == PROMPT_TOKENS + SYSTEM_TOKENS
    assert msg.usage.output_tokens == FAKE_COMPLETION_TOKENS

    rec = upstream.last()
    assert upstream.count() == 1
    assert rec.path == "/v1/messages"
    assert rec.headers.get("x-api-key") == ANTHROPIC_KEY
    assert rec.headers.get("anthropic-version") == ANTHROPIC_VERSION
    assert_tokengate_key_not_forwarded(multi_gateway, rec)
    assert rec.body["model"] == "claude-test"
    assert rec.body["max_tokens"] == 100
    assert rec.body["temperature"] == 0.2
    assert text_of(rec.body["system"]) == SYSTEM
    assert len(rec.body["messages"]) == 1 and text_of(rec.body["messages"][0]["content"]) == PROMPT

    row = assert_billed(multi_gateway, h.get("x-request-id"), ANTH, PROMPT_TOKENS + SYSTEM_TOKENS, FAKE_COMPLETION_TOKENS)
    assert row["endpoint"] == "/v1/messages"
    assert row["provider"] == "fakeanth" and row["stream"] == 0


def test_native_stream(anth, upstream, multi_gateway):
    with anth.messages.stream(
        model=ANTH, max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
    ) as s:
        h = {k.lower(): v for k, v in s.response.headers.items()}
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert h.get("x-tokengate-provider") == "fakeanth"
    assert h.get("content-type", "").startswith("text/event-stream")
    assert text == FAKE_CONTENT
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == PROMPT_TOKENS
    assert final.usage.output_tokens == FAKE_COMPLETION_TOKENS
    rec = upstream.last()
    assert rec.path == "/v1/messages" and rec.body["stream"] is True
    assert rec.headers.get("x-api-key") == ANTHROPIC_KEY
    row = assert_billed(multi_gateway, h.get("x-request-id"), ANTH, PROMPT_TOKENS, FAKE_COMPLETION_TOKENS)
    assert row["stream"] == 1


@pytest.mark.parametrize("model", [ANTH, OAI, MOCK])
def test_stream_exact_event_sequence(multi_gateway, upstream, model):
    """Raw SSE, authenticated with x-api-key: Anthropic's exact framing whatever the
    provider kind behind the model."""
    status, headers, body, err = raw_stream(
        f"{multi_gateway.base_url}/messages",
        {"model": model, "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": PROMPT}]},
        {"x-api-key": multi_gateway.api_key, "anthropic-version": "2023-06-01"},
    )
    assert status == 200, body[:500]
    assert err is None, f"stream ended abnormally: {err!r}"
    assert headers.get("content-type", "").startswith("text/event-stream")
    events = assert_stream_events(body)
    start = events[0][1]["message"]
    assert start["role"] == "assistant" and start["content"] == []
    assert isinstance(start["usage"]["input_tokens"], int)
    text = "".join(
        o["delta"]["text"] for n, o in events if n == "content_block_delta" and o["delta"]["type"] == "text_delta"
    )
    delta = [o for n, o in events if n == "message_delta"][0]
    assert delta["delta"]["stop_reason"] == "end_turn"
    if model == MOCK:
        assert text.startswith("Hello from the tokengate mock provider.")
        assert delta["usage"]["output_tokens"] == len(text.split())
    else:
        assert text == FAKE_CONTENT
        # Usage on message_delta is cumulative and overrides message_start (which, when
        # translating from an OpenAI upstream, cannot know the prompt size yet).
        effective_in = delta["usage"].get("input_tokens", start["usage"]["input_tokens"])
        assert effective_in == PROMPT_TOKENS, (start["usage"], delta["usage"])
        if model == ANTH:
            assert start["usage"]["input_tokens"] == PROMPT_TOKENS  # native: as the upstream sent it
        assert delta["usage"]["output_tokens"] == FAKE_COMPLETION_TOKENS


def test_bearer_and_x_api_key_and_any_version(multi_gateway, upstream):
    body = {"model": ANTH, "max_tokens": 20, "messages": [{"role": "user", "content": PROMPT}]}
    for headers in (
        {"x-api-key": multi_gateway.api_key, "anthropic-version": "2023-06-01"},
        {"Authorization": f"Bearer {multi_gateway.api_key}", "anthropic-version": "2099-01-01"},
        {"x-api-key": multi_gateway.api_key},  # no version at all
    ):
        status, _, raw = raw_post(f"{multi_gateway.base_url}/messages", body, headers)
        assert status == 200, (headers, raw[:300])
        assert json.loads(raw)["content"][0]["text"] == FAKE_CONTENT
        # tokengate always speaks its own version upstream
        assert upstream.last().headers.get("anthropic-version") == ANTHROPIC_VERSION


# --------------------------------------------------------------------------
# Translated: anthropic inbound -> openai-kind provider / mock
# --------------------------------------------------------------------------


def test_translated_plain(anth, upstream, multi_gateway):
    raw = anth.messages.with_raw_response.create(
        model=OAI,
        max_tokens=100,
        system=SYSTEM,
        messages=[{"role": "user", "content": PROMPT}],
        extra_body={"temperature": 0.2, "top_p": 0.9},  # not keywords of this SDK version
    )
    h = headers_of(raw)
    assert h.get("x-tokengate-provider") == "fakeoai"
    assert h.get("x-tokengate-model") == OAI
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant" and isinstance(msg.id, str)
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == FAKE_CONTENT
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == PROMPT_TOKENS + SYSTEM_TOKENS
    assert msg.usage.output_tokens == FAKE_COMPLETION_TOKENS

    rec = upstream.last()
    assert rec.path == "/v1/chat/completions"
    assert rec.headers.get("authorization") == f"Bearer {OPENAI_KEY}"
    assert_tokengate_key_not_forwarded(multi_gateway, rec)
    b = rec.body
    assert b["model"] == "gpt-test"
    assert [m["role"] for m in b["messages"]] == ["system", "user"]
    assert text_of(b["messages"][0]["content"]) == SYSTEM
    assert text_of(b["messages"][1]["content"]) == PROMPT
    assert b.get("max_tokens", b.get("max_completion_tokens")) == 100
    assert b["temperature"] == 0.2 and b["top_p"] == 0.9
    assert not b.get("stream")

    assert_billed(multi_gateway, h.get("x-request-id"), OAI, PROMPT_TOKENS + SYSTEM_TOKENS, FAKE_COMPLETION_TOKENS)


def test_translated_system_blocks(anth, upstream):
    anth.messages.create(
        model=OAI,
        max_tokens=50,
        system=[{"type": "text", "text": "You are"}, {"type": "text", "text": "terse."}],
        messages=[{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
    )
    msgs = upstream.last().body["messages"]
    assert msgs[0]["role"] == "system"
    assert words_of(msgs[0]["content"]) == ["You", "are", "terse."]
    assert msgs[-1]["role"] == "user" and text_of(msgs[-1]["content"]) == PROMPT


def test_translated_stream(anth, upstream, multi_gateway):
    with anth.messages.stream(
        model=OAI, max_tokens=100, system=SYSTEM, messages=[{"role": "user", "content": PROMPT}]
    ) as s:
        h = {k.lower(): v for k, v in s.response.headers.items()}
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert h.get("x-tokengate-provider") == "fakeoai"
    assert text == FAKE_CONTENT
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == PROMPT_TOKENS + SYSTEM_TOKENS
    assert final.usage.output_tokens == FAKE_COMPLETION_TOKENS
    rec = upstream.last()
    assert rec.path == "/v1/chat/completions"
    assert rec.body["stream"] is True
    assert (rec.body.get("stream_options") or {}).get("include_usage") is True
    assert_billed(multi_gateway, h.get("x-request-id"), OAI, PROMPT_TOKENS + SYSTEM_TOKENS, FAKE_COMPLETION_TOKENS)


def test_mock_provider_plain_and_stream(anth):
    msg = anth.messages.create(model=MOCK, max_tokens=100, messages=[{"role": "user", "content": "hi there"}])
    text = msg.content[0].text
    assert text.startswith("Hello from the tokengate mock provider.")
    assert msg.stop_reason == "end_turn"
    # The mock counts 3 + words per message, and one token per answer word.
    assert msg.usage.input_tokens == 3 + 2
    assert msg.usage.output_tokens == len(text.split())

    with anth.messages.stream(model=MOCK, max_tokens=100, messages=[{"role": "user", "content": "hi there"}]) as s:
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    assert streamed.split() == text.split()
    assert final.usage.input_tokens == 5 and final.usage.output_tokens == len(text.split())


def test_translated_stop_sequences_and_max_tokens(anth, upstream):
    msg = anth.messages.create(
        model=OAI, max_tokens=100, stop_sequences=["upstream"], messages=[{"role": "user", "content": PROMPT}]
    )
    stop = upstream.last().body.get("stop")
    assert stop in (["upstream"], "upstream"), upstream.last().body
    assert msg.content[0].text == "Hello from the fake "
    # OpenAI's finish_reason "stop" does not say which; either reading is fine.
    assert msg.stop_reason in ("stop_sequence", "end_turn")

    msg = anth.messages.create(model=OAI, max_tokens=3, messages=[{"role": "user", "content": PROMPT}])
    assert msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens == 3
    body = upstream.last().body
    assert body.get("max_tokens", body.get("max_completion_tokens")) == 3


def test_translated_images(anth, upstream):
    anth.messages.create(
        model=OAI,
        max_tokens=50,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                    {"type": "image", "source": {"type": "url", "url": IMAGE_URL}},
                    {"type": "text", "text": "Describe these"},
                ],
            }
        ],
    )
    parts = upstream.last().body["messages"][-1]["content"]
    assert isinstance(parts, list), parts
    images = [p for p in parts if p.get("type") == "image_url"]
    urls = [p["image_url"]["url"] for p in images]
    assert urls == [f"data:image/png;base64,{PNG_B64}", IMAGE_URL], parts
    assert [p["text"] for p in parts if p.get("type") == "text"] == ["Describe these"]


def test_translated_cached_tokens(anth, upstream, multi_gateway):
    content = PROMPT + " [fault:cached:3]"  # 7 words, 3 of them cached
    raw = anth.messages.with_raw_response.create(
        model=OAI, max_tokens=100, messages=[{"role": "user", "content": content}]
    )
    msg = raw.parse()
    assert msg.usage.input_tokens == 7 - 3
    assert msg.usage.cache_read_input_tokens == 3
    assert (msg.usage.cache_creation_input_tokens or 0) == 0
    assert_billed(multi_gateway, headers_of(raw).get("x-request-id"), OAI, 4, FAKE_COMPLETION_TOKENS, cache_read=3)


# --------------------------------------------------------------------------
# Native cache accounting (cache read and write prices)
# --------------------------------------------------------------------------


def test_native_cache_usage_and_cost(anth, multi_gateway):
    content = PROMPT + " [fault:cached:2] [fault:cachewrite:3]"  # 8 words: 3 uncached, 2 read, 3 written
    raw = anth.messages.with_raw_response.create(
        model=ANTH, max_tokens=100, messages=[{"role": "user", "content": content}]
    )
    u = raw.parse().usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (3, 2, 3)
    assert_billed(
        multi_gateway, headers_of(raw).get("x-request-id"), ANTH, 3, FAKE_COMPLETION_TOKENS, cache_read=2, cache_write=3
    )

    with anth.messages.stream(model=ANTH, max_tokens=100, messages=[{"role": "user", "content": content}]) as s:
        h = {k.lower(): v for k, v in s.response.headers.items()}
        final = s.get_final_message()
    u = final.usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (3, 2, 3)
    assert u.output_tokens == FAKE_COMPLETION_TOKENS
    assert_billed(multi_gateway, h.get("x-request-id"), ANTH, 3, FAKE_COMPLETION_TOKENS, cache_read=2, cache_write=3)


# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------


def test_translated_tool_use(anth, upstream, multi_gateway):
    raw = anth.messages.with_raw_response.create(
        model=OAI, max_tokens=200, tools=[WEATHER_TOOL_ANTH], messages=[{"role": "user", "content": WEATHER_Q}]
    )
    msg = raw.parse()
    body = upstream.last().body
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": TOOL_NAME,
                "description": WEATHER_TOOL_ANTH["description"],
                "parameters": WEATHER_TOOL_ANTH["input_schema"],
            },
        }
    ], body["tools"]
    assert msg.stop_reason == "tool_use"
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert len(uses) == 1, msg.content
    assert uses[0].name == TOOL_NAME and uses[0].input == TOOL_ARGS
    assert isinstance(uses[0].id, str) and uses[0].id
    assert msg.usage.output_tokens == TOOL_COMPLETION_TOKENS
    assert_billed(multi_gateway, headers_of(raw).get("x-request-id"), OAI, WEATHER_Q_TOKENS, TOOL_COMPLETION_TOKENS)

    # Follow-up turn: the tool_result reaches the OpenAI upstream as a role "tool" message
    # answering the assistant's tool call.
    upstream.reset()
    follow = anth.messages.create(
        model=OAI,
        max_tokens=200,
        tools=[WEATHER_TOOL_ANTH],
        messages=[
            {"role": "user", "content": WEATHER_Q},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": TOOL_RESULT}]},
        ],
    )
    assert follow.content[0].text == FAKE_CONTENT and follow.stop_reason == "end_turn"
    assert follow.usage.input_tokens == WEATHER_Q_TOKENS + TOOL_RESULT_TOKENS
    msgs = upstream.last().body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool"], msgs
    calls = msgs[1]["tool_calls"]
    assert len(calls) == 1 and calls[0]["type"] == "function"
    assert calls[0]["function"]["name"] == TOOL_NAME
    assert json.loads(calls[0]["function"]["arguments"]) == TOOL_ARGS
    assert msgs[2]["tool_call_id"] == calls[0]["id"] == uses[0].id
    assert text_of(msgs[2]["content"]) == TOOL_RESULT


def test_translated_tool_use_stream(anth, upstream):
    with anth.messages.stream(
        model=OAI, max_tokens=200, tools=[WEATHER_TOOL_ANTH], messages=[{"role": "user", "content": WEATHER_Q}]
    ) as s:
        final = s.get_final_message()
    assert upstream.last().body["stream"] is True
    assert final.stop_reason == "tool_use"
    uses = [b for b in final.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == TOOL_NAME and uses[0].input == TOOL_ARGS
    assert final.usage.output_tokens == TOOL_COMPLETION_TOKENS


def test_translated_tool_choice(anth, upstream):
    for choice, expected in (
        ({"type": "auto"}, ("auto",)),
        ({"type": "any"}, ("required",)),
        (
            {"type": "tool", "name": TOOL_NAME},
            ({"type": "function", "function": {"name": TOOL_NAME}},),
        ),
    ):
        anth.messages.create(
            model=OAI,
            max_tokens=50,
            tools=[WEATHER_TOOL_ANTH],
            tool_choice=choice,
            messages=[{"role": "user", "content": PROMPT}],
        )
        assert upstream.last().body.get("tool_choice") in expected, (choice, upstream.last().body.get("tool_choice"))


def test_native_tool_use_roundtrip(anth, upstream):
    msg = anth.messages.create(
        model=ANTH, max_tokens=200, tools=[WEATHER_TOOL_ANTH], messages=[{"role": "user", "content": WEATHER_Q}]
    )
    assert upstream.last().body["tools"][0]["input_schema"] == WEATHER_TOOL_ANTH["input_schema"]
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["text", "tool_use"]
    assert msg.content[0].text == ANTHROPIC_TOOL_PREAMBLE
    assert (msg.content[1].id, msg.content[1].input) == (ANTHROPIC_TOOL_USE_ID, TOOL_ARGS)

    with anth.messages.stream(
        model=ANTH, max_tokens=200, tools=[WEATHER_TOOL_ANTH], messages=[{"role": "user", "content": WEATHER_Q}]
    ) as s:
        final = s.get_final_message()
    assert final.content[1].input == TOOL_ARGS and final.stop_reason == "tool_use"

    follow = anth.messages.create(
        model=ANTH,
        max_tokens=200,
        tools=[WEATHER_TOOL_ANTH],
        messages=[
            {"role": "user", "content": WEATHER_Q},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": ANTHROPIC_TOOL_USE_ID, "content": TOOL_RESULT}]},
        ],
    )
    assert follow.content[0].text == FAKE_CONTENT
    last = upstream.last().body["messages"][-1]
    assert blocks_of(last["content"])[0]["type"] == "tool_result"


# --------------------------------------------------------------------------
# Errors, in Anthropic's shape and mapped by the SDK from the status
# --------------------------------------------------------------------------


def test_bad_key(multi_gateway):
    bad = anthropic.Anthropic(api_key="sk-tg-" + "x" * 43, base_url=multi_gateway.url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as ei:
        bad.messages.create(model=ANTH, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert ei.value.status_code == 401
    assert anthropic_error_of(ei.value.body)["type"] == "authentication_error"

    status, _, raw = raw_post(
        f"{multi_gateway.base_url}/messages",
        {"model": ANTH, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
        {"x-api-key": "sk-tg-" + "y" * 43, "anthropic-version": "2023-06-01"},
    )
    assert status == 401
    assert anthropic_error_of(json.loads(raw))["type"] == "authentication_error"

    status, _, raw = raw_post(
        f"{multi_gateway.base_url}/messages",
        {"model": ANTH, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
        {"anthropic-version": "2023-06-01"},
    )
    assert status == 401, "a request without any key must be refused"


def test_unknown_model(anth):
    with pytest.raises(anthropic.NotFoundError) as ei:
        anth.messages.create(model="no-such/model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert ei.value.status_code == 404
    assert anthropic_error_of(ei.value.body)["type"] == "not_found_error"


def test_malformed_body(multi_gateway):
    status, headers, raw = raw_post(
        f"{multi_gateway.base_url}/messages",
        b'{"model": "fakeanth/claude-test", "messages": [',
        {"x-api-key": multi_gateway.api_key},
    )
    assert status == 400
    assert headers.get("content-type", "").startswith("application/json")
    assert anthropic_error_of(json.loads(raw))["type"] == "invalid_request_error"


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_upstream_400_passthrough(anth, upstream, fault_model, kind):
    model = fault_model(kind)
    with pytest.raises(anthropic.BadRequestError) as ei:
        anth.messages.create(
            model=model, max_tokens=10, messages=[{"role": "user", "content": "hi [fault:status:400]"}]
        )
    assert ei.value.status_code == 400
    assert anthropic_error_of(ei.value.body)["type"] == "invalid_request_error"
    assert upstream.count() == 1, "a 4xx from the upstream is the caller's to fix: no fallback, no retry"


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
@pytest.mark.parametrize("status", [429, 500, 503, 529])
def test_upstream_failure_without_fallback(anth, multi_gateway, fault_model, kind, status):
    """No other target: the contract's 502/503/504 (api_error / overloaded_error)."""
    model = fault_model(kind)
    before = max_rowid(multi_gateway)
    with pytest.raises(anthropic.APIStatusError) as ei:
        anth.messages.create(
            model=model, max_tokens=10, messages=[{"role": "user", "content": f"hi [fault:status:{status}]"}]
        )
    assert ei.value.status_code in (502, 503, 504), (ei.value.status_code, ei.value.body)
    assert isinstance(ei.value, anthropic.InternalServerError)
    assert anthropic_error_of(ei.value.body)["type"] in ("api_error", "overloaded_error")
    row = wait_row_where(multi_gateway, before, lambda r: r["model"] == model and r["status"] != 200)
    assert row["cost_nano"] == 0 and row["status"] == ei.value.status_code, dict(row)


def test_insufficient_balance(anth, multi_gateway):
    # The hold for max_tokens=1,000,000 at $15/M output is $15 > the $5 demo balance.
    before = settle(multi_gateway)
    with pytest.raises(anthropic.PaymentRequiredError) as ei:
        anth.messages.create(model=ANTH, max_tokens=1_000_000, messages=[{"role": "user", "content": "hi"}])
    assert ei.value.status_code == 402
    anthropic_error_of(ei.value.body)
    assert settle(multi_gateway) == before


def test_body_too_large(small_body_gateway):
    gw = small_body_gateway
    client = anthropic.Anthropic(api_key=gw.api_key, base_url=gw.url, max_retries=0)
    with pytest.raises(anthropic.ContentTooLargeError) as ei:
        client.messages.create(model=MOCK, max_tokens=10, messages=[{"role": "user", "content": "word " * 400}])
    assert ei.value.status_code == 413
    anthropic_error_of(ei.value.body)
    # The instance keeps serving (a fresh client: reusing the connection after a 413 is
    # test_errors_and_faults.py::test_413_connection_close's business).
    fresh = anthropic.Anthropic(api_key=gw.api_key, base_url=gw.url, max_retries=0)
    ok = fresh.messages.create(model=MOCK, max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert ok.content[0].text.startswith("Hello from the tokengate mock provider.")


def test_model_not_allowed(multi_gateway):
    raw_key = create_key_or_skip(multi_gateway, models=[OAI])
    client = anthropic.Anthropic(api_key=raw_key, base_url=multi_gateway.url, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as ei:
        client.messages.create(model=ANTH, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert ei.value.status_code == 403
    assert anthropic_error_of(ei.value.body)["type"] == "permission_error"
    ok = client.messages.create(model=OAI, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert ok.type == "message"


def test_balance_is_debited_by_messages(anth, multi_gateway):
    before = settle(multi_gateway)
    raw = anth.messages.with_raw_response.create(
        model=ANTH, max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
    )
    row = assert_billed(
        multi_gateway, headers_of(raw).get("x-request-id"), ANTH, PROMPT_TOKENS, FAKE_COMPLETION_TOKENS
    )
    assert settle(multi_gateway) == before - row["cost_nano"]
    assert balance(multi_gateway) == before - row["cost_nano"]
