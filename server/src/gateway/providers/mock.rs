//! The mock provider: a real provider type that answers OpenAI chat completions
//! deterministically, in the exact wire format (JSON or SSE), with configurable latency.
//! It serves the demo, the tests and the benchmark upstream (`tokengate-server
//! mock-upstream`). Faults are injectable per request and per provider: a last user
//! message containing `[mock:status:NNN]` makes that request fail with NNN, one containing
//! `[mock:cut:N]` makes a streamed answer break off (transport error) after N content
//! chunks, and the provider setting `fail_status` makes every request fail.
//!
//! Tokens are counted as whitespace-separated words (+3 per message), so tests can predict
//! usage exactly. Embeddings are deterministic unit-free vectors derived from each input's
//! bytes (`dimensions` honoured, default 16), as floats or base64 little-endian `f32`.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use super::{UpstreamError, UpstreamReply};

/// Settings from the provider's `config` object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MockAdapter {
    /// Delay before the response (or the first chunk).
    pub latency_ms: u64,
    /// Delay between streamed chunks.
    pub chunk_delay_ms: u64,
    /// When set, every request (chat or embeddings) answers this status with an OpenAI
    /// error body, as a provider in an outage would.
    pub fail_status: Option<u16>,
}

impl MockAdapter {
    /// Reads `latency_ms`, `chunk_delay_ms` and `fail_status` (an error status, 400–599;
    /// other values are ignored) from the provider's `config` object.
    pub fn from_config(config: &Value) -> Self {
        let get = |k: &str| config.get(k).and_then(Value::as_u64).unwrap_or(0);
        MockAdapter {
            latency_ms: get("latency_ms"),
            chunk_delay_ms: get("chunk_delay_ms"),
            fail_status: config
                .get("fail_status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (400..600).contains(s)),
        }
    }

    /// Answers a chat request (`body` already carries the upstream model name).
    pub async fn chat(&self, body: &Value, stream: bool) -> Result<UpstreamReply, UpstreamError> {
        if self.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.latency_ms)).await;
        }
        let answer = answer(body);
        if let Some(status) = self.fail_status.or(answer.fail_status) {
            return Ok(failure(status));
        }
        if !stream {
            return Ok(UpstreamReply::Json {
                status: 200,
                body: Bytes::from(answer.json().to_string()),
            });
        }
        let delay = self.chunk_delay_ms;
        let mut items: Vec<Result<Bytes, UpstreamError>> = answer
            .sse_chunks(include_usage(body))
            .into_iter()
            .map(Ok)
            .collect();
        if let Some(n) = answer.cut_after {
            // The role chunk, `n` content chunks, then the connection breaks.
            items.truncate(1 + n.min(answer.words.len()));
            items.push(Err(UpstreamError::Transport("reset".into())));
        }
        let s =
            futures::stream::iter(items.into_iter().enumerate()).then(move |(i, c)| async move {
                if delay > 0 && i > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                c
            });
        Ok(UpstreamReply::Stream {
            status: 200,
            body: Box::pin(s),
        })
    }

    /// Answers an OpenAI embeddings request.
    pub async fn embeddings(&self, body: &Value) -> Result<UpstreamReply, UpstreamError> {
        if self.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.latency_ms)).await;
        }
        if let Some(status) = self.fail_status {
            return Ok(failure(status));
        }
        Ok(UpstreamReply::Json {
            status: 200,
            body: Bytes::from(embeddings(body).to_string()),
        })
    }
}

/// An OpenAI-shaped error answer with `status`.
fn failure(status: u16) -> UpstreamReply {
    let kind = if status >= 500 {
        "server_error"
    } else {
        "invalid_request_error"
    };
    UpstreamReply::Json {
        status,
        body: Bytes::from(
            json!({"error": {"message": format!("mock failure {status}"),
                "type": kind, "param": null, "code": null}})
            .to_string(),
        ),
    }
}

/// The inputs of an embeddings body as texts (token arrays are rendered as numbers).
fn embedding_inputs(input: &Value) -> Vec<String> {
    match input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_number) => vec![
            items
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        ],
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => embedding_inputs(other).join(" "),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A deterministic vector for `text`.
pub fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..dims)
        .map(|i| {
            h = h
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407 + i as u64);
            ((h >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The OpenAI `list` of embeddings for a request body.
pub fn embeddings(body: &Value) -> Value {
    use base64::Engine as _;
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(16, |d| d.clamp(1, 4096) as usize);
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let inputs = embedding_inputs(body.get("input").unwrap_or(&Value::Null));
    let tokens: i64 = inputs
        .iter()
        .map(|t| t.split_whitespace().count().max(1) as i64)
        .sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = vector(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json!({"object": "list", "data": data,
           "model": body.get("model").cloned().unwrap_or(Value::Null),
           "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
}

fn include_usage(body: &Value) -> bool {
    body.pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Whitespace-word token count of a message's content (string or content parts).
fn content_tokens(content: &Value) -> i64 {
    match content {
        Value::String(s) => s.split_whitespace().count() as i64,
        Value::Array(parts) => parts
            .iter()
            .map(|p| {
                p.get("text")
                    .and_then(Value::as_str)
                    .map_or(1, |t| t.split_whitespace().count()) as i64
            })
            .sum(),
        _ => 0,
    }
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// A computed mock answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub model: String,
    pub id: String,
    pub words: Vec<String>,
    pub prompt_tokens: i64,
    pub finish_reason: &'static str,
    pub fail_status: Option<u16>,
    /// From `[mock:cut:N]`: a streamed answer breaks off after this many content chunks.
    pub cut_after: Option<usize>,
}

/// The deterministic answer to a chat body.
pub fn answer(body: &Value) -> Answer {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_string();
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let prompt_tokens: i64 = messages
        .iter()
        .map(|m| 3 + m.get("content").map_or(0, content_tokens))
        .sum();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(content_text)
        .unwrap_or_default();
    let fail_status = last_user
        .split("[mock:status:")
        .nth(1)
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|c| (400..600).contains(c));
    let cut_after = last_user
        .split("[mock:cut:")
        .nth(1)
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(n, _)| n.parse::<usize>().ok());
    let echoed: Vec<&str> = last_user.split_whitespace().take(24).collect();
    let mut words: Vec<String> = "Hello from the tokengate mock provider. You said:"
        .split_whitespace()
        .map(str::to_string)
        .collect();
    words.extend(echoed.iter().map(|w| (*w).to_string()));
    let limit = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .map(|v| v as usize);
    let mut finish_reason = "stop";
    if let Some(limit) = limit
        && words.len() > limit
    {
        words.truncate(limit);
        finish_reason = "length";
    }
    // Stable id from the content so identical requests give identical answers.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in last_user.bytes().chain(model.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    Answer {
        model,
        id: format!("chatcmpl-mock{h:016x}"),
        words,
        prompt_tokens,
        finish_reason,
        fail_status,
        cut_after,
    }
}

impl Answer {
    fn usage(&self) -> Value {
        let completion = self.words.len() as i64;
        json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
               "total_tokens": self.prompt_tokens + completion})
    }

    /// The non-streaming `chat.completion` object.
    pub fn json(&self) -> Value {
        json!({
            "id": self.id, "object": "chat.completion", "created": 1_700_000_000,
            "model": self.model, "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.words.join(" ")},
                         "logprobs": null, "finish_reason": self.finish_reason}],
            "usage": self.usage(),
        })
    }

    /// The `chat.completion.chunk` events of a stream, one word per chunk, ending in
    /// `[DONE]`; with `include_usage` a final chunk with empty choices carries the usage.
    pub fn sse_chunks(&self, include_usage: bool) -> Vec<Bytes> {
        let chunk = |delta: Value, finish: Value| {
            let v = json!({"id": self.id, "object": "chat.completion.chunk", "created": 1_700_000_000,
                "model": self.model, "system_fingerprint": "fp_mock",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
            Bytes::from(format!("data: {v}\n\n"))
        };
        let mut out = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        for (i, w) in self.words.iter().enumerate() {
            let text = if i == 0 { w.clone() } else { format!(" {w}") };
            out.push(chunk(json!({"content": text}), Value::Null));
        }
        out.push(chunk(json!({}), json!(self.finish_reason)));
        if include_usage {
            let v = json!({"id": self.id, "object": "chat.completion.chunk", "created": 1_700_000_000,
                "model": self.model, "system_fingerprint": "fp_mock", "choices": [], "usage": self.usage()});
            out.push(Bytes::from(format!("data: {v}\n\n")));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_deterministic_and_counted() {
        let body = json!({"model": "fast-1", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi there"}]});
        let a = answer(&body);
        assert_eq!(a, answer(&body));
        assert_eq!(a.prompt_tokens, 3 + 2 + 3 + 2);
        assert_eq!(a.words.len(), 8 + 2);
        assert_eq!(a.json()["usage"]["completion_tokens"], 10);
        assert_eq!(
            a.json()["choices"][0]["message"]["content"],
            "Hello from the tokengate mock provider. You said: hi there"
        );
    }

    #[test]
    fn max_tokens_truncates_and_status_marker_fails() {
        let a = answer(&json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 3}));
        assert_eq!(a.words.len(), 3);
        assert_eq!(a.finish_reason, "length");
        let f =
            answer(&json!({"messages": [{"role": "user", "content": "boom [mock:status:503]"}]}));
        assert_eq!(f.fail_status, Some(503));
    }

    #[test]
    fn embeddings_are_deterministic_in_both_encodings() {
        use base64::Engine as _;
        let f = embeddings(&json!({"model": "e", "input": ["one two", "three"], "dimensions": 4}));
        assert_eq!(f["usage"]["prompt_tokens"], 3);
        assert_eq!(f["data"].as_array().unwrap().len(), 2);
        let floats: Vec<f32> = serde_json::from_value(f["data"][0]["embedding"].clone()).unwrap();
        assert_eq!(floats, vector("one two", 4));
        let b =
            embeddings(&json!({"input": "one two", "dimensions": 4, "encoding_format": "base64"}));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = raw
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(decoded, floats);
    }

    #[test]
    fn stream_has_usage_only_when_asked() {
        let a = answer(&json!({"messages": [{"role": "user", "content": "a b"}]}));
        let plain = a.sse_chunks(false);
        let with = a.sse_chunks(true);
        assert_eq!(with.len(), plain.len() + 1);
        assert_eq!(
            plain.last().unwrap(),
            &Bytes::from_static(b"data: [DONE]\n\n")
        );
        let usage_chunk = String::from_utf8(with[with.len() - 2].to_vec()).unwrap();
        assert!(usage_chunk.contains("\"choices\":[]") && usage_chunk.contains("\"usage\""));
    }

    fn chunk_json(b: &Bytes) -> Value {
        let text = std::str::from_utf8(b).unwrap();
        let data = text
            .strip_prefix("data: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .unwrap();
        serde_json::from_str(data).unwrap()
    }

    async fn collect(reply: UpstreamReply) -> Vec<Result<Bytes, UpstreamError>> {
        match reply {
            UpstreamReply::Stream { status, body } => {
                assert_eq!(status, 200);
                body.collect().await
            }
            UpstreamReply::Json { status, .. } => panic!("expected a stream, got JSON {status}"),
        }
    }

    #[tokio::test]
    async fn cut_marker_breaks_a_stream_after_n_content_chunks() {
        let m = MockAdapter::default();
        let body = json!({"model": "fast-1", "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "go [mock:cut:2]"}]});
        assert_eq!(answer(&body).cut_after, Some(2));
        let items = collect(m.chat(&body, true).await.unwrap()).await;
        assert_eq!(items.len(), 4, "{items:?}");
        let role = chunk_json(items[0].as_ref().unwrap());
        assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(
            chunk_json(items[1].as_ref().unwrap())["choices"][0]["delta"]["content"],
            "Hello"
        );
        assert_eq!(
            chunk_json(items[2].as_ref().unwrap())["choices"][0]["delta"]["content"],
            " from"
        );
        for ok in &items[..3] {
            let v = chunk_json(ok.as_ref().unwrap());
            assert!(v["choices"][0]["finish_reason"].is_null(), "{v}");
            assert!(v.get("usage").is_none(), "{v}");
        }
        assert_eq!(items[3], Err(UpstreamError::Transport("reset".into())));

        // More chunks asked for than the answer has: every word, then the break.
        let long = json!({"messages": [{"role": "user", "content": "[mock:cut:500]"}]});
        let words = answer(&long).words.len();
        let items = collect(m.chat(&long, true).await.unwrap()).await;
        assert_eq!(items.len(), 1 + words + 1);
        assert!(items[..=words].iter().all(Result::is_ok));
        assert!(items[words + 1].is_err());

        // Zero: only the role chunk.
        let zero = json!({"messages": [{"role": "user", "content": "[mock:cut:0]"}]});
        let items = collect(m.chat(&zero, true).await.unwrap()).await;
        assert_eq!(items.len(), 2);
        assert!(items[1].is_err());
    }

    #[tokio::test]
    async fn cut_marker_leaves_other_answers_alone() {
        let m = MockAdapter::default();
        let body = json!({"messages": [{"role": "user", "content": "go [mock:cut:2]"}]});
        let UpstreamReply::Json { status, body: raw } = m.chat(&body, false).await.unwrap() else {
            panic!("expected JSON");
        };
        assert_eq!(status, 200);
        let v: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["completion_tokens"], 8 + 2);
        // A malformed marker is no marker.
        let plain = json!({"messages": [{"role": "user", "content": "[mock:cut:x] [mock:cut:3"}]});
        assert_eq!(answer(&plain).cut_after, None);
        let items = collect(m.chat(&plain, true).await.unwrap()).await;
        assert!(items.iter().all(Result::is_ok));
        assert_eq!(
            items.last().unwrap().as_ref().unwrap(),
            &Bytes::from_static(b"data: [DONE]\n\n")
        );
    }

    #[tokio::test]
    async fn fail_status_config_fails_every_request() {
        assert_eq!(MockAdapter::from_config(&json!({})), MockAdapter::default());
        for ignored in [
            json!(200),
            json!(99),
            json!(70_000),
            json!("503"),
            json!(-1),
        ] {
            let m = MockAdapter::from_config(&json!({"fail_status": ignored}));
            assert_eq!(m.fail_status, None, "{ignored}");
        }
        let m = MockAdapter::from_config(&json!({"fail_status": 503, "latency_ms": 1}));
        assert_eq!(m.fail_status, Some(503));
        assert_eq!(m.latency_ms, 1);
        let chat = json!({"messages": [{"role": "user", "content": "hi"}]});
        for reply in [
            m.chat(&chat, false).await.unwrap(),
            m.chat(&chat, true).await.unwrap(),
            m.embeddings(&json!({"input": "hi"})).await.unwrap(),
        ] {
            let UpstreamReply::Json { status, body } = reply else {
                panic!("expected a JSON error");
            };
            assert_eq!(status, 503);
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["type"], "server_error");
            assert!(v["error"]["message"].is_string());
        }
        let m = MockAdapter::from_config(&json!({"fail_status": 400}));
        let UpstreamReply::Json { status, body } = m.chat(&chat, false).await.unwrap() else {
            panic!("expected a JSON error");
        };
        assert_eq!(status, 400);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        // Healthy again without the setting.
        let m = MockAdapter::from_config(&json!({}));
        let UpstreamReply::Json { status, .. } = m.chat(&chat, false).await.unwrap() else {
            panic!("expected JSON");
        };
        assert_eq!(status, 200);
    }
}
