"""Unit checks of the fake upstream itself, with the real openai and anthropic SDKs
pointed straight at it (no tokengate involved): if these fail, the harness is broken,
not the gateway."""

from __future__ import annotations

import json
import time

import anthropic
import httpx2
import openai
import pytest

from e2e_helpers import parse_sse, raw_post, raw_stream
from fake_upstream import (
    ANTHROPIC_KEY,
    ANTHROPIC_TOOL_PREAMBLE,
    ANTHROPIC_TOOL_USE_ID,
    FAKE_COMPLETION_TOKENS,
    FAKE_CONTENT,
    FAKE_PIECES,
    OPENAI_KEY,
    OPENAI_TOOL_CALL_ID,
    TOOL_ARGS,
    TOOL_COMPLETION_TOKENS,
    TOOL_NAME,
    decode_embedding_b64,
    fake_embedding,
)

PROMPT = "Say hello to the gateway please"  # 6 words

WEATHER_TOOL_OAI = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_TOOL_ANTH = {
    "name": TOOL_NAME,
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture()
def fo(upstream):
    return openai.OpenAI(api_key=OPENAI_KEY, base_url=upstream.base_url, max_retries=0, timeout=10)


@pytest.fixture()
def fa(upstream):
    return anthropic.Anthropic(api_key=ANTHROPIC_KEY, base_url=upstream.url, max_retries=0, timeout=10)


# --------------------------------------------------------------------------
# OpenAI chat
# --------------------------------------------------------------------------


def test_openai_chat_plain_and_recording(fo, upstream):
    r = fo.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": PROMPT}],
    )
    assert r.choices[0].message.content == FAKE_CONTENT
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 8
    assert r.usage.completion_tokens == FAKE_COMPLETION_TOKENS
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    rec = upstream.last("/chat/completions")
    assert rec.path == "/v1/chat/completions"
    assert rec.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert rec.body["messages"][1]["content"] == PROMPT
    assert upstream.count() == 1
    assert upstream.counts() == {"/v1/chat/completions": 1}
    upstream.reset()
    assert upstream.count() == 0


def test_openai_stream_with_usage_and_cached(fo):
    stream = fo.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": PROMPT + " [fault:cached:2]"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    texts, usage, finish = [], None, None
    for c in stream:
        if c.choices:
            texts.append(c.choices[0].delta.content or "")
            finish = c.choices[0].finish_reason or finish
        if c.usage:
            usage = c.usage
    assert "".join(texts) == FAKE_CONTENT
    assert finish == "stop"
    assert usage.prompt_tokens == 7 and usage.completion_tokens == FAKE_COMPLETION_TOKENS
    assert usage.prompt_tokens_details.cached_tokens == 2


def test_openai_stream_without_usage(fo):
    chunks = list(
        fo.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": PROMPT}], stream=True)
    )
    assert all(c.usage is None and c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == FAKE_CONTENT


def test_openai_max_tokens_and_stop(fo):
    r = fo.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": PROMPT}], max_tokens=2)
    assert r.choices[0].message.content == "".join(FAKE_PIECES[:2])
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 2
    r = fo.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": PROMPT}], stop=["upstream"])
    assert r.choices[0].message.content == "Hello from the fake "
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 4


def test_openai_tool_calls(fo):
    msgs = [{"role": "user", "content": "Weather in Paris? [fault:tool]"}]
    r = fo.chat.completions.create(model="gpt-test", messages=msgs, tools=[WEATHER_TOOL_OAI])
    tc = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert (tc.id, tc.function.name, json.loads(tc.function.arguments)) == (OPENAI_TOOL_CALL_ID, TOOL_NAME, TOOL_ARGS)
    assert r.usage.completion_tokens == TOOL_COMPLETION_TOKENS

    args, names, finish, frags = "", set(), None, 0
    for c in fo.chat.completions.create(model="gpt-test", messages=msgs, tools=[WEATHER_TOOL_OAI], stream=True):
        d = c.choices[0].delta
        for t in d.tool_calls or []:
            if t.function and t.function.name:
                names.add(t.function.name)
            if t.function and t.function.arguments:
                args += t.function.arguments
                frags += 1
        finish = c.choices[0].finish_reason or finish
    assert json.loads(args) == TOOL_ARGS and names == {TOOL_NAME} and finish == "tool_calls" and frags > 1

    # The follow-up turn (last message is the tool result) gets a plain answer.
    follow = msgs + [
        {"role": "assistant", "content": None, "tool_calls": [tc.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": tc.id, "content": "Sunny, 22 C"},
    ]
    r2 = fo.chat.completions.create(model="gpt-test", messages=follow, tools=[WEATHER_TOOL_OAI])
    assert r2.choices[0].message.content == FAKE_CONTENT
    assert r2.usage.prompt_tokens == 4 + 3


def test_openai_rejects_orphan_tool_message(fo):
    with pytest.raises(openai.BadRequestError):
        fo.chat.completions.create(
            model="gpt-test", messages=[{"role": "tool", "tool_call_id": "nope", "content": "x"}]
        )


@pytest.mark.parametrize(
    "status,exc",
    [
        (400, openai.BadRequestError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_openai_status_fault(fo, status, exc):
    with pytest.raises(exc) as ei:
        fo.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": f"hi [fault:status:{status}]"}])
    assert ei.value.status_code == status
    assert isinstance(ei.value.body, dict) and "message" in ei.value.body


def test_openai_wrong_key(upstream):
    bad = openai.OpenAI(api_key="sk-wrong", base_url=upstream.base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])


def test_openai_reset_cut_malformed_delay(fo, upstream):
    with pytest.raises(openai.APIConnectionError):
        fo.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi [fault:reset]"}])

    got = []
    with pytest.raises(openai.APIConnectionError):
        for c in fo.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi [fault:cut:2]"}], stream=True
        ):
            got.append(c.choices[0].delta.content or "")
    assert "".join(got) == "".join(FAKE_PIECES[:2])

    status, _, body, err = raw_stream(
        f"{upstream.base_url}/chat/completions",
        {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "hi [fault:cut:3]"}]},
        {"Authorization": f"Bearer {OPENAI_KEY}"},
    )
    assert status == 200 and err is not None, "a cut stream must end without the chunked terminator"
    events = parse_sse(body)
    assert [json.loads(d)["choices"][0]["delta"].get("content") for _, d in events[1:]] == FAKE_PIECES[:3]
    assert "[DONE]" not in body.decode()

    status, _, body = raw_post(
        f"{upstream.base_url}/chat/completions",
        {"model": "gpt-test", "messages": [{"role": "user", "content": "hi [fault:malformed]"}]},
        {"Authorization": f"Bearer {OPENAI_KEY}"},
    )
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(body)

    t0 = time.time()
    status, _, body, err = raw_stream(
        f"{upstream.base_url}/chat/completions",
        {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "hi [fault:linger:400]"}]},
        {"Authorization": f"Bearer {OPENAI_KEY}"},
    )
    assert status == 200 and err is None and body.endswith(b"data: [DONE]\n\n")
    assert time.time() - t0 >= 0.4

    t0 = time.time()
    r = fo.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi [fault:delay:400]"}])
    assert time.time() - t0 >= 0.4
    assert r.choices[0].message.content == FAKE_CONTENT


def test_pinned_fault_base_url(upstream):
    c = openai.OpenAI(api_key=OPENAI_KEY, base_url=upstream.fault_base_url("status:503"), max_retries=0)
    with pytest.raises(openai.InternalServerError) as ei:
        c.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert ei.value.status_code == 503
    assert upstream.count("/chat/completions") == 1
    assert upstream.last().path == "/fault/status:503/v1/chat/completions"


# --------------------------------------------------------------------------
# OpenAI embeddings
# --------------------------------------------------------------------------


def test_embeddings_float_base64(fo, upstream):
    r = fo.embeddings.create(model="embed-test", input=["one two three", "four"], encoding_format="float")
    assert [d.embedding for d in r.data] == [fake_embedding("one two three"), fake_embedding("four")]
    assert r.usage.prompt_tokens == 4 and r.usage.total_tokens == 4
    assert upstream.last().headers["authorization"] == f"Bearer {OPENAI_KEY}"

    r = fo.embeddings.create(model="embed-test", input="one two three", encoding_format="base64")
    assert isinstance(r.data[0].embedding, str)
    assert decode_embedding_b64(r.data[0].embedding) == fake_embedding("one two three")

    r = fo.embeddings.create(model="embed-test", input="one two three")  # SDK asks base64, decodes
    assert upstream.last().body["encoding_format"] == "base64"
    assert r.data[0].embedding == fake_embedding("one two three")


# --------------------------------------------------------------------------
# Anthropic messages
# --------------------------------------------------------------------------


def test_anthropic_plain(fa, upstream):
    m = fa.messages.create(
        model="claude-test", max_tokens=100, system="Be terse.", messages=[{"role": "user", "content": PROMPT}]
    )
    assert m.content[0].type == "text" and m.content[0].text == FAKE_CONTENT
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens == 8 and m.usage.output_tokens == FAKE_COMPLETION_TOKENS
    rec = upstream.last("/messages")
    assert rec.headers["authorization"] == f"Bearer {ANTHROPIC_KEY}"  # how this SDK sends api_key
    assert rec.headers["anthropic-version"]
    # tokengate's way: x-api-key
    status, _, raw = raw_post(
        f"{upstream.base_url}/messages",
        {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
    )
    assert status == 200 and json.loads(raw)["type"] == "message"


def test_anthropic_stream_exact_events(upstream):
    status, headers, body, err = raw_stream(
        f"{upstream.base_url}/messages",
        {"model": "claude-test", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": PROMPT}]},
        {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
    )
    assert status == 200 and err is None and headers["content-type"].startswith("text/event-stream")
    events = parse_sse(body)
    names = [e for e, _ in events]
    assert names == (
        ["message_start", "content_block_start", "ping"]
        + ["content_block_delta"] * len(FAKE_PIECES)
        + ["content_block_stop", "message_delta", "message_stop"]
    )
    for name, data in events:
        assert json.loads(data)["type"] == name
    start = json.loads(events[0][1])["message"]
    assert start["usage"]["input_tokens"] == 6 and start["usage"]["output_tokens"] == 1
    delta = json.loads(events[-2][1])
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"] == {"output_tokens": FAKE_COMPLETION_TOKENS}


def test_anthropic_stream_sdk_and_cache(fa):
    with fa.messages.stream(
        model="claude-test",
        max_tokens=100,
        messages=[{"role": "user", "content": PROMPT + " [fault:cached:2] [fault:cachewrite:3]"}],
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == FAKE_CONTENT
    u = final.usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens, u.output_tokens) == (
        3, 2, 3, FAKE_COMPLETION_TOKENS,
    )


def test_anthropic_tool_use(fa):
    msgs = [{"role": "user", "content": "Weather in Paris? [fault:tool]"}]
    m = fa.messages.create(model="claude-test", max_tokens=100, tools=[WEATHER_TOOL_ANTH], messages=msgs)
    assert m.stop_reason == "tool_use"
    assert m.content[0].text == ANTHROPIC_TOOL_PREAMBLE
    assert (m.content[1].type, m.content[1].id, m.content[1].name, m.content[1].input) == (
        "tool_use", ANTHROPIC_TOOL_USE_ID, TOOL_NAME, TOOL_ARGS,
    )
    with fa.messages.stream(model="claude-test", max_tokens=100, tools=[WEATHER_TOOL_ANTH], messages=msgs) as s:
        final = s.get_final_message()
    assert final.content[1].input == TOOL_ARGS and final.stop_reason == "tool_use"
    assert final.usage.output_tokens == TOOL_COMPLETION_TOKENS

    follow = msgs + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": ANTHROPIC_TOOL_USE_ID, "content": "Sunny, 22 C"}]},
    ]
    m2 = fa.messages.create(model="claude-test", max_tokens=100, tools=[WEATHER_TOOL_ANTH], messages=follow)
    assert m2.content[0].text == FAKE_CONTENT and m2.stop_reason == "end_turn"


def test_anthropic_stop_sequence_and_max_tokens(fa):
    m = fa.messages.create(
        model="claude-test", max_tokens=100, stop_sequences=["upstream"], messages=[{"role": "user", "content": PROMPT}]
    )
    assert m.content[0].text == "Hello from the fake " and m.stop_reason == "stop_sequence"
    assert m.stop_sequence == "upstream"
    m = fa.messages.create(model="claude-test", max_tokens=3, messages=[{"role": "user", "content": PROMPT}])
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 3


def test_anthropic_validation_and_errors(fa, upstream):
    bad = anthropic.Anthropic(api_key="sk-wrong", base_url=upstream.url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="claude-test", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    # Missing max_tokens / a system role in messages / missing anthropic-version: 400.
    for body, headers in [
        ({"model": "c", "messages": [{"role": "user", "content": "hi"}]}, {"anthropic-version": "2023-06-01"}),
        (
            {"model": "c", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]},
            {"anthropic-version": "2023-06-01"},
        ),
        ({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, {}),
    ]:
        status, _, raw = raw_post(f"{upstream.base_url}/messages", body, {"x-api-key": ANTHROPIC_KEY, **headers})
        assert status == 400, raw
        assert json.loads(raw)["error"]["type"] == "invalid_request_error"
    for status, exc in [(429, anthropic.RateLimitError), (529, anthropic.OverloadedError), (500, anthropic.InternalServerError)]:
        with pytest.raises(exc) as ei:
            fa.messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": f"hi [fault:status:{status}]"}])
        assert ei.value.status_code == status
        assert ei.value.body["type"] == "error"


def test_anthropic_cut_and_malformed_stream(fa, upstream):
    status, _, body, err = raw_stream(
        f"{upstream.base_url}/messages",
        {"model": "c", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi [fault:cut:2]"}]},
        {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
    )
    assert status == 200 and err is not None
    names = [e for e, _ in parse_sse(body)]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta"]

    with pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)):
        with fa.messages.stream(
            model="c", max_tokens=50, messages=[{"role": "user", "content": "hi [fault:cut:2]"}]
        ) as s:
            for _ in s.text_stream:
                pass

    status, _, body, err = raw_stream(
        f"{upstream.base_url}/messages",
        {"model": "c", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi [fault:malformed]"}]},
        {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
    )
    assert status == 200 and err is None
    events = parse_sse(body)
    assert events[0][0] == "message_start"
    with pytest.raises(ValueError):
        json.loads(events[1][1])


def test_named_tool_marker(fo, fa):
    """``[fault:tool:NAME]`` calls NAME with ``{"input": CUSTOM_TOOL_INPUT}``, whole and streamed."""
    from fake_upstream import CUSTOM_TOOL_INPUT

    want = {"input": CUSTOM_TOOL_INPUT}
    fn = {"type": "function", "function": {"name": "apply_patch", "parameters": {"type": "object", "properties": {"input": {"type": "string"}}}}}
    msgs = [{"role": "user", "content": "Patch it [fault:tool:apply_patch]"}]
    tc = fo.chat.completions.create(model="gpt-test", messages=msgs, tools=[fn]).choices[0].message.tool_calls[0]
    assert tc.function.name == "apply_patch" and json.loads(tc.function.arguments) == want
    args, frags = "", 0
    for c in fo.chat.completions.create(model="gpt-test", messages=msgs, tools=[fn], stream=True):
        for t in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            if t.function and t.function.arguments:
                args += t.function.arguments
                frags += 1
    assert json.loads(args) == want and frags > 1

    tool = {"name": "apply_patch", "input_schema": {"type": "object", "properties": {"input": {"type": "string"}}}}
    m = fa.messages.create(model="claude-test", max_tokens=100, tools=[tool], messages=msgs)
    assert (m.content[1].name, m.content[1].input) == ("apply_patch", want)
    with fa.messages.stream(model="claude-test", max_tokens=100, tools=[tool], messages=msgs) as s:
        assert s.get_final_message().content[1].input == want
