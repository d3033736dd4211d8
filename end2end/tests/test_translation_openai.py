"""OpenAI Chat Completions in, Anthropic Messages out: the ``openai`` SDK against the
anthropic-kind provider (``fakeanth``), checking both the translated upstream request
(recorded by the fake) and the translated answer, chunk by chunk for streams."""

from __future__ import annotations

import json

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
    WEATHER_TOOL_OAI,
    assert_billed,
    assert_tokengate_key_not_forwarded,
    blocks_of,
    parse_sse,
    raw_stream,
    text_of,
    words_of,
)
from fake_upstream import (
    ANTHROPIC_KEY,
    ANTHROPIC_TOOL_PREAMBLE,
    ANTHROPIC_VERSION,
    FAKE_COMPLETION_TOKENS,
    FAKE_CONTENT,
    TOOL_ARGS,
    TOOL_COMPLETION_TOKENS,
    TOOL_NAME,
)

ANTH = "fakeanth/claude-test"
ANTH_MAX_OUTPUT = 8192


def headers_of(raw) -> dict:
    return {k.lower(): v for k, v in raw.headers.items()}


def collect(stream):
    """(text, tool calls by index {index: {"id","name","arguments","type"}}, finish
    reasons, usage chunks, chunk count) of an openai SDK stream."""
    text, calls, finishes, usages, n = "", {}, [], [], 0
    for c in stream:
        n += 1
        assert c.object == "chat.completion.chunk"
        if c.usage is not None:
            usages.append(c)
        for ch in c.choices:
            d = ch.delta
            if d.content:
                text += d.content
            for tc in d.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": "", "type": None})
                if tc.id:
                    slot["id"] = tc.id
                if tc.type:
                    slot["type"] = tc.type
                if tc.function and tc.function.name:
                    slot["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    slot["arguments"] += tc.function.arguments
            if ch.finish_reason:
                finishes.append(ch.finish_reason)
    return text, calls, finishes, usages, n


# --------------------------------------------------------------------------
# Plain and streaming
# --------------------------------------------------------------------------


def test_plain(oai, upstream, multi_gateway):
    raw = oai.chat.completions.with_raw_response.create(
        model=ANTH,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
        max_tokens=100,
        temperature=0.2,
        top_p=0.9,
    )
    h = headers_of(raw)
    assert h.get("x-tokengate-provider") == "fakeanth"
    assert h.get("x-tokengate-model") == ANTH
    assert h.get("x-tokengate-attempts") == "1"
    r = raw.parse()
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == FAKE_CONTENT
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == PROMPT_TOKENS + SYSTEM_TOKENS
    assert r.usage.completion_tokens == FAKE_COMPLETION_TOKENS
    assert r.usage.total_tokens == PROMPT_TOKENS + SYSTEM_TOKENS + FAKE_COMPLETION_TOKENS

    rec = upstream.last()
    assert upstream.count() == 1
    assert rec.path == "/v1/messages"
    assert rec.headers.get("x-api-key") == ANTHROPIC_KEY
    assert rec.headers.get("anthropic-version") == ANTHROPIC_VERSION
    assert_tokengate_key_not_forwarded(multi_gateway, rec)
    b = rec.body
    assert b["model"] == "claude-test"
    assert text_of(b["system"]) == SYSTEM
    assert [m["role"] for m in b["messages"]] == ["user"]
    assert text_of(b["messages"][0]["content"]) == PROMPT
    assert b["max_tokens"] == 100
    assert b["temperature"] == 0.2 and b["top_p"] == 0.9
    assert not b.get("stream")

    assert_billed(multi_gateway, h.get("x-request-id"), ANTH, PROMPT_TOKENS + SYSTEM_TOKENS, FAKE_COMPLETION_TOKENS)


def test_max_tokens_supplied_when_absent(oai, upstream):
    oai.chat.completions.create(model=ANTH, messages=[{"role": "user", "content": PROMPT}])
    mt = upstream.last().body.get("max_tokens")
    assert isinstance(mt, int) and 1 <= mt <= ANTH_MAX_OUTPUT, upstream.last().body

    oai.chat.completions.create(model=ANTH, messages=[{"role": "user", "content": PROMPT}], max_completion_tokens=40)
    assert upstream.last().body.get("max_tokens") == 40


def test_multi_turn_and_system(oai, upstream):
    r = oai.chat.completions.create(
        model=ANTH,
        messages=[
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "First question here"},
            {"role": "assistant", "content": "First answer"},
            {"role": "user", "content": PROMPT},
        ],
    )
    b = upstream.last().body
    assert text_of(b["system"]) == SYSTEM
    assert [m["role"] for m in b["messages"]] == ["user", "assistant", "user"]
    assert [text_of(m["content"]) for m in b["messages"]] == ["First question here", "First answer", PROMPT]
    assert r.usage.prompt_tokens == SYSTEM_TOKENS + 3 + 2 + PROMPT_TOKENS


def test_stream_without_usage(oai, upstream):
    raw = oai.chat.completions.with_raw_response.create(
        model=ANTH, messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    assert headers_of(raw).get("x-tokengate-provider") == "fakeanth"
    text, calls, finishes, usages, n = collect(raw.parse())
    assert text == FAKE_CONTENT
    assert calls == {}
    assert finishes == ["stop"]
    assert usages == [], "usage must not reach a client that did not ask for it"
    assert n >= 3, "the answer must arrive chunk by chunk"
    b = upstream.last().body
    assert upstream.last().path == "/v1/messages"
    assert b["stream"] is True and isinstance(b.get("max_tokens"), int)


def test_stream_with_usage(oai, upstream, multi_gateway):
    raw = oai.chat.completions.with_raw_response.create(
        model=ANTH,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, _, finishes, usages, _ = collect(raw.parse())
    assert text == FAKE_CONTENT and finishes == ["stop"]
    assert len(usages) == 1, usages
    u = usages[0]
    assert u.choices == []
    assert u.usage.prompt_tokens == PROMPT_TOKENS + SYSTEM_TOKENS
    assert u.usage.completion_tokens == FAKE_COMPLETION_TOKENS
    assert u.usage.total_tokens == PROMPT_TOKENS + SYSTEM_TOKENS + FAKE_COMPLETION_TOKENS
    row = assert_billed(
        multi_gateway, headers_of(raw).get("x-request-id"), ANTH, PROMPT_TOKENS + SYSTEM_TOKENS, FAKE_COMPLETION_TOKENS
    )
    assert row["stream"] == 1


def test_stream_raw_framing(multi_gateway, upstream):
    """OpenAI SSE framing: data-only events, chat.completion.chunk objects, one id,
    [DONE] last."""
    status, headers, body, err = raw_stream(
        f"{multi_gateway.base_url}/chat/completions",
        {"model": ANTH, "stream": True, "messages": [{"role": "user", "content": PROMPT}]},
        {"Authorization": f"Bearer {multi_gateway.api_key}"},
    )
    assert status == 200 and err is None, (status, err, body[:300])
    assert headers.get("content-type", "").startswith("text/event-stream")
    events = parse_sse(body)
    assert events[-1] == (None, "[DONE]"), events[-3:]
    chunks = [json.loads(d) for e, d in events[:-1]]
    assert all(e is None for e, _ in events), "OpenAI streams carry no `event:` lines"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == FAKE_CONTENT


# --------------------------------------------------------------------------
# Stop sequences, limits
# --------------------------------------------------------------------------


@pytest.mark.parametrize("stop", [["upstream"], "upstream"])
def test_stop_becomes_stop_sequences(oai, upstream, stop):
    r = oai.chat.completions.create(model=ANTH, messages=[{"role": "user", "content": PROMPT}], stop=stop)
    assert upstream.last().body.get("stop_sequences") == ["upstream"], upstream.last().body
    assert r.choices[0].message.content == "Hello from the fake "
    assert r.choices[0].finish_reason == "stop"


def test_max_tokens_finish_length(oai, upstream):
    r = oai.chat.completions.create(model=ANTH, messages=[{"role": "user", "content": PROMPT}], max_tokens=3)
    assert upstream.last().body["max_tokens"] == 3
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3

    _, _, finishes, _, _ = collect(
        oai.chat.completions.create(
            model=ANTH, messages=[{"role": "user", "content": PROMPT}], max_tokens=3, stream=True
        )
    )
    assert finishes == ["length"]


# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------


def test_tool_definitions_and_call(oai, upstream, multi_gateway):
    raw = oai.chat.completions.with_raw_response.create(
        model=ANTH, messages=[{"role": "user", "content": WEATHER_Q}], tools=[WEATHER_TOOL_OAI]
    )
    b = upstream.last().body
    assert b["tools"] == [
        {
            "name": TOOL_NAME,
            "description": WEATHER_TOOL_OAI["function"]["description"],
            "input_schema": WEATHER_TOOL_OAI["function"]["parameters"],
        }
    ], b["tools"]
    r = raw.parse()
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls"
    assert ch.message.content == ANTHROPIC_TOOL_PREAMBLE
    assert len(ch.message.tool_calls) == 1
    tc = ch.message.tool_calls[0]
    assert tc.type == "function" and isinstance(tc.id, str) and tc.id
    assert tc.function.name == TOOL_NAME
    assert json.loads(tc.function.arguments) == TOOL_ARGS
    assert r.usage.completion_tokens == TOOL_COMPLETION_TOKENS
    assert_billed(multi_gateway, headers_of(raw).get("x-request-id"), ANTH, WEATHER_Q_TOKENS, TOOL_COMPLETION_TOKENS)


def test_tool_call_stream(oai, upstream):
    text, calls, finishes, usages, _ = collect(
        oai.chat.completions.create(
            model=ANTH,
            messages=[{"role": "user", "content": WEATHER_Q}],
            tools=[WEATHER_TOOL_OAI],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert text == ANTHROPIC_TOOL_PREAMBLE
    assert list(calls) == [0], calls  # first (and only) tool call is index 0
    c = calls[0]
    assert c["id"] and c["name"] == TOOL_NAME and c["type"] == "function"
    assert json.loads(c["arguments"]) == TOOL_ARGS
    assert finishes == ["tool_calls"]
    assert len(usages) == 1 and usages[0].usage.completion_tokens == TOOL_COMPLETION_TOKENS


def test_tool_call_stream_arrives_in_fragments(multi_gateway, upstream):
    status, _, body, err = raw_stream(
        f"{multi_gateway.base_url}/chat/completions",
        {"model": ANTH, "stream": True, "tools": [WEATHER_TOOL_OAI], "messages": [{"role": "user", "content": WEATHER_Q}]},
        {"Authorization": f"Bearer {multi_gateway.api_key}"},
    )
    assert status == 200 and err is None
    frags = []
    for _, d in parse_sse(body):
        if d == "[DONE]":
            continue
        for ch in json.loads(d).get("choices") or []:
            for tc in ch["delta"].get("tool_calls") or []:
                if (tc.get("function") or {}).get("arguments"):
                    frags.append(tc["function"]["arguments"])
    assert len(frags) >= 2, f"tool-call arguments should be relayed as they stream: {frags}"
    assert json.loads("".join(frags)) == TOOL_ARGS


def test_tool_result_follow_up(oai, upstream):
    first = oai.chat.completions.create(
        model=ANTH, messages=[{"role": "user", "content": WEATHER_Q}], tools=[WEATHER_TOOL_OAI]
    )
    tc = first.choices[0].message.tool_calls[0]
    upstream.reset()
    r = oai.chat.completions.create(
        model=ANTH,
        tools=[WEATHER_TOOL_OAI],
        messages=[
            {"role": "user", "content": WEATHER_Q},
            {
                "role": "assistant",
                "content": first.choices[0].message.content,
                "tool_calls": [
                    {"id": tc.id, "type": "function", "function": {"name": tc.function.name, "arguments": tc.function.arguments}}
                ],
            },
            {"role": "tool", "tool_call_id": tc.id, "content": TOOL_RESULT},
        ],
    )
    assert r.choices[0].message.content == FAKE_CONTENT
    assert r.choices[0].finish_reason == "stop"
    msgs = upstream.last().body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"], msgs
    uses = [blk for blk in blocks_of(msgs[1]["content"]) if blk["type"] == "tool_use"]
    assert len(uses) == 1
    assert uses[0]["id"] == tc.id and uses[0]["name"] == TOOL_NAME and uses[0]["input"] == TOOL_ARGS
    results = [blk for blk in blocks_of(msgs[2]["content"]) if blk["type"] == "tool_result"]
    assert len(results) == 1
    assert results[0]["tool_use_id"] == tc.id
    assert words_of(results[0].get("content")) == TOOL_RESULT.split()
    # the assistant's text (the preamble) is part of the conversation sent back
    preamble_tokens = len((first.choices[0].message.content or "").split())
    assert r.usage.prompt_tokens == WEATHER_Q_TOKENS + preamble_tokens + TOOL_RESULT_TOKENS


@pytest.mark.parametrize(
    "choice,expected",
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": TOOL_NAME}}, {"type": "tool", "name": TOOL_NAME}),
    ],
)
def test_tool_choice(oai, upstream, choice, expected):
    oai.chat.completions.create(
        model=ANTH, messages=[{"role": "user", "content": PROMPT}], tools=[WEATHER_TOOL_OAI], tool_choice=choice
    )
    got = upstream.last().body.get("tool_choice")
    assert isinstance(got, dict), upstream.last().body
    # disable_parallel_tool_use may be added; the rest must match
    assert {k: v for k, v in got.items() if k != "disable_parallel_tool_use"} == expected


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------


def test_image_parts(oai, upstream):
    oai.chat.completions.create(
        model=ANTH,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe these"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                    {"type": "image_url", "image_url": {"url": IMAGE_URL, "detail": "low"}},
                ],
            }
        ],
    )
    blocks = blocks_of(upstream.last().body["messages"][0]["content"])
    assert [blk["type"] for blk in blocks] == ["text", "image", "image"], blocks
    assert blocks[0]["text"] == "Describe these"
    assert blocks[1]["source"] == {"type": "base64", "media_type": "image/png", "data": PNG_B64}
    assert blocks[2]["source"] == {"type": "url", "url": IMAGE_URL}


# --------------------------------------------------------------------------
# Cached tokens
# --------------------------------------------------------------------------

CACHED_PROMPT = PROMPT + " [fault:cached:3] [fault:cachewrite:2]"  # 8 words: 3 uncached, 3 read, 2 written


def test_cached_tokens(oai, multi_gateway):
    raw = oai.chat.completions.with_raw_response.create(model=ANTH, messages=[{"role": "user", "content": CACHED_PROMPT}])
    u = raw.parse().usage
    # prompt_tokens = input + cache_read + cache_creation; cached_tokens = cache reads
    assert u.prompt_tokens == 8
    assert u.prompt_tokens_details is not None and u.prompt_tokens_details.cached_tokens == 3
    assert u.completion_tokens == FAKE_COMPLETION_TOKENS
    assert u.total_tokens == 8 + FAKE_COMPLETION_TOKENS
    assert_billed(
        multi_gateway, headers_of(raw).get("x-request-id"), ANTH, 3, FAKE_COMPLETION_TOKENS, cache_read=3, cache_write=2
    )


def test_cached_tokens_stream(oai, multi_gateway):
    raw = oai.chat.completions.with_raw_response.create(
        model=ANTH,
        messages=[{"role": "user", "content": CACHED_PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    _, _, _, usages, _ = collect(raw.parse())
    assert len(usages) == 1
    u = usages[0].usage
    assert u.prompt_tokens == 8 and u.prompt_tokens_details.cached_tokens == 3
    assert u.completion_tokens == FAKE_COMPLETION_TOKENS
    assert_billed(
        multi_gateway, headers_of(raw).get("x-request-id"), ANTH, 3, FAKE_COMPLETION_TOKENS, cache_read=3, cache_write=2
    )
