//! Whole (non-streaming) chat answers from one wire format to the other, with usage.

use serde_json::{Value, json};
use tokengate_core::money::Usage;

use super::{anthropic_usage_json, finish_reason, openai_usage_json, stop_reason};

/// An Anthropic `message` as an OpenAI `chat.completion`.
pub fn anthropic_to_openai(msg: &Value, usage: &Usage, created: i64) -> Value {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for b in msg
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => tool_calls.push(json!({
                "id": b.get("id").cloned().unwrap_or(json!("")),
                "type": "function",
                "function": {"name": b.get("name").cloned().unwrap_or(json!("")),
                             "arguments": b.get("input").unwrap_or(&json!({})).to_string()},
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant",
        "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) },
        "refusal": null});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let reason = msg
        .get("stop_reason")
        .and_then(Value::as_str)
        .map_or("stop", finish_reason);
    json!({
        "id": format!("chatcmpl-{}", msg.get("id").and_then(Value::as_str).unwrap_or("tokengate")),
        "object": "chat.completion",
        "created": created,
        "model": msg.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": reason}],
        "usage": openai_usage_json(usage),
    })
}

/// An OpenAI `chat.completion` as an Anthropic `message` (first choice).
pub fn openai_to_anthropic(completion: &Value, usage: &Usage) -> Value {
    let choice = completion
        .pointer("/choices/0")
        .cloned()
        .unwrap_or(Value::Null);
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    let mut content = Vec::new();
    if let Some(t) = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": t}));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let args = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or(json!("")),
            "name": call.pointer("/function/name").cloned().unwrap_or(json!("")),
            "input": serde_json::from_str::<Value>(args).unwrap_or_else(|_| json!({})),
        }));
    }
    let reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map_or("end_turn", stop_reason);
    let id = completion
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("tokengate");
    json!({
        "id": if id.starts_with("msg_") { id.to_string() } else { format!("msg_{id}") },
        "type": "message",
        "role": "assistant",
        "model": completion.get("model").cloned().unwrap_or(Value::Null),
        "content": content,
        "stop_reason": reason,
        "stop_sequence": null,
        "usage": anthropic_usage_json(usage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_message_becomes_completion_with_tool_calls() {
        let msg = json!({"id": "msg_1", "type": "message", "model": "claude", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "Let me check."},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]});
        let u = Usage {
            input: 3,
            output: 4,
            cache_read: 5,
            cache_write: 0,
        };
        let c = anthropic_to_openai(&msg, &u, 7);
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(c["choices"][0]["message"]["content"], "Let me check.");
        assert_eq!(
            c["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(c["usage"]["prompt_tokens"], 8);
        assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
    }

    #[test]
    fn completion_becomes_anthropic_message() {
        let c = json!({"id": "chatcmpl-9", "model": "gpt", "choices": [{"index": 0, "finish_reason": "length",
            "message": {"role": "assistant", "content": "Hi", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}]});
        let u = Usage {
            input: 1,
            output: 2,
            ..Usage::default()
        };
        let m = openai_to_anthropic(&c, &u);
        assert_eq!(m["id"], "msg_chatcmpl-9");
        assert_eq!(m["stop_reason"], "max_tokens");
        assert_eq!(m["content"][0], json!({"type": "text", "text": "Hi"}));
        assert_eq!(m["content"][1]["input"], json!({"a": 1}));
        assert_eq!(m["usage"]["output_tokens"], 2);
    }
}
