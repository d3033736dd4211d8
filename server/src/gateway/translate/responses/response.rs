//! Whole (non-streamed) upstream answers as Response objects: a Chat Completion or an
//! Anthropic message becomes `reasoning`, `message` and `function_call` /
//! `custom_tool_call` output items, with the request echoed, the status (`completed`, or
//! `incomplete` when the output cap or a content filter cut it) and the usage.

use serde_json::{Value, json};
use tokengate_core::money::Usage;

use super::{
    End, REDACTED_MARK, ResponseCtx, SIGNATURE_MARK, Tools, call_item, finished, new_item_id,
    reasoning_tokens,
};

/// A `message` output item holding `text`.
pub(super) fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant",
        "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]})
}

/// A `reasoning` output item with `text` as its one summary part (none when empty).
pub(super) fn reasoning_item(id: &str, text: &str, encrypted: Option<&str>) -> Value {
    let summary = if text.is_empty() {
        json!([])
    } else {
        json!([{"type": "summary_text", "text": text}])
    };
    let mut item = json!({"id": id, "type": "reasoning", "summary": summary});
    if let Some(e) = encrypted {
        item["encrypted_content"] = json!(e);
    }
    item
}

/// The reasoning text of a chat message or delta (`reasoning_content` from DeepSeek and
/// vLLM, `reasoning` from OpenRouter and newer vLLM).
pub(super) fn chat_reasoning(m: &Value) -> Option<&str> {
    m.get("reasoning_content")
        .and_then(Value::as_str)
        .or_else(|| m.get("reasoning").and_then(Value::as_str))
        .filter(|t| !t.is_empty())
}

/// Marks the last item `incomplete` when the response was cut.
fn mark_cut(output: &mut [Value], end: &End) {
    if matches!(end, End::Incomplete(_))
        && let Some(last) = output.last_mut()
        && last.get("status").is_some()
    {
        last["status"] = json!("incomplete");
    }
}

/// A Chat Completion (its first choice) as a Response.
pub fn from_chat(completion: &Value, usage: &Usage, ctx: &ResponseCtx) -> Value {
    let tools = Tools::of(&ctx.request);
    let choice = completion.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut output = Vec::new();
    if let Some(r) = chat_reasoning(message) {
        output.push(reasoning_item(&new_item_id("rs"), r, None));
    }
    let text = message.get("content").and_then(Value::as_str).unwrap_or("");
    let refusal = message
        .get("refusal")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty());
    if let Some(r) = refusal {
        output.push(
            json!({"id": new_item_id("msg"), "type": "message", "status": "completed",
            "role": "assistant", "content": [{"type": "refusal", "refusal": r}]}),
        );
    } else if !text.is_empty() {
        output.push(message_item(&new_item_id("msg"), text, "completed"));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let call_id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map_or_else(|| new_item_id("call"), str::to_string);
        output.push(call_item(
            &tools,
            None,
            &call_id,
            call.pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or(""),
            call.pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}"),
            "completed",
        ));
    }
    let end = End::from_finish_reason(choice.get("finish_reason").and_then(Value::as_str));
    mark_cut(&mut output, &end);
    let reasoning = completion.get("usage").map_or(0, reasoning_tokens);
    finished(ctx, output, usage, reasoning, &end)
}

/// An Anthropic message as a Response: runs of text become message items, thinking
/// blocks reasoning items (their signature kept in `encrypted_content`), tool uses calls.
pub fn from_anthropic(msg: &Value, usage: &Usage, ctx: &ResponseCtx) -> Value {
    let tools = Tools::of(&ctx.request);
    let mut output: Vec<Value> = Vec::new();
    let mut text = String::new();
    let flush = |text: &mut String, output: &mut Vec<Value>| {
        if !text.is_empty() {
            output.push(message_item(&new_item_id("msg"), text, "completed"));
            text.clear();
        }
    };
    for b in msg
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => {
                flush(&mut text, &mut output);
                let sig = b
                    .get("signature")
                    .and_then(Value::as_str)
                    .map(|s| format!("{SIGNATURE_MARK}{s}"));
                output.push(reasoning_item(
                    &new_item_id("rs"),
                    b.get("thinking").and_then(Value::as_str).unwrap_or(""),
                    sig.as_deref(),
                ));
            }
            Some("redacted_thinking") => {
                flush(&mut text, &mut output);
                let data = format!(
                    "{REDACTED_MARK}{}",
                    b.get("data").and_then(Value::as_str).unwrap_or("")
                );
                output.push(reasoning_item(&new_item_id("rs"), "", Some(&data)));
            }
            Some("tool_use") => {
                flush(&mut text, &mut output);
                output.push(call_item(
                    &tools,
                    None,
                    b.get("id").and_then(Value::as_str).unwrap_or(""),
                    b.get("name").and_then(Value::as_str).unwrap_or(""),
                    &b.get("input").unwrap_or(&json!({})).to_string(),
                    "completed",
                ));
            }
            _ => {}
        }
    }
    flush(&mut text, &mut output);
    let end = End::from_stop_reason(msg.get("stop_reason").and_then(Value::as_str));
    mark_cut(&mut output, &end);
    finished(ctx, output, usage, 0, &end)
}

/// A failed Response: status `failed`, `error {code, message}` (`code` in OpenAI's
/// vocabulary, see [`super::error_code`]), no output.
pub fn failed(ctx: &ResponseCtx, code: &str, message: &str, usage: &Usage) -> Value {
    finished(
        ctx,
        Vec::new(),
        usage,
        0,
        &End::Failed(code.to_string(), message.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ResponseCtx {
        ResponseCtx {
            id: "resp_abc".into(),
            created_at: 100,
            request: json!({"model": "client-model", "tools": [
                {"type": "function", "name": "get_weather", "parameters": {}},
                {"type": "custom", "name": "apply_patch"}]})
            .as_object()
            .unwrap()
            .clone(),
        }
    }

    fn usage() -> Usage {
        Usage {
            input: 10,
            output: 30,
            cache_read: 90,
            cache_write: 0,
        }
    }

    #[test]
    fn chat_completion_becomes_response_items() {
        let c = json!({"id": "chatcmpl-1", "model": "upstream-model", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "reasoning_content": "Think.", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"*** Begin Patch\"}"}}]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 30, "completion_tokens_details": {"reasoning_tokens": 12}}});
        let r = from_chat(&c, &usage(), &ctx());
        assert_eq!(r["id"], "resp_abc");
        assert_eq!(r["object"], "response");
        assert_eq!(r["model"], "client-model");
        assert_eq!(r["status"], "completed");
        let out = r["output"].as_array().unwrap();
        let types: Vec<&str> = out.iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            ["reasoning", "message", "function_call", "custom_tool_call"]
        );
        assert_eq!(
            out[0]["summary"],
            json!([{"type": "summary_text", "text": "Think."}])
        );
        assert!(out[0]["id"].as_str().unwrap().starts_with("rs_"));
        assert_eq!(out[1]["content"][0]["text"], "Checking.");
        assert_eq!(out[1]["content"][0]["annotations"], json!([]));
        assert_eq!(out[1]["role"], "assistant");
        assert!(out[2]["id"].as_str().unwrap().starts_with("fc_"));
        assert_eq!(out[2]["call_id"], "call_1");
        assert_eq!(out[2]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(out[2]["status"], "completed");
        assert!(out[3]["id"].as_str().unwrap().starts_with("ctc_"));
        assert_eq!(out[3]["input"], "*** Begin Patch");
        assert_eq!(out[3]["call_id"], "call_2");
        assert_eq!(
            r["usage"],
            json!({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 90, "cache_write_tokens": 0},
                "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 130})
        );
    }

    #[test]
    fn length_makes_an_incomplete_response() {
        let c =
            json!({"choices": [{"finish_reason": "length", "message": {"content": "Once upon"}}]});
        let r = from_chat(&c, &usage(), &ctx());
        assert_eq!(r["status"], "incomplete");
        assert_eq!(
            r["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(r["output"][0]["status"], "incomplete");
        let f =
            json!({"choices": [{"finish_reason": "content_filter", "message": {"content": null}}]});
        let r = from_chat(&f, &usage(), &ctx());
        assert_eq!(r["incomplete_details"]["reason"], "content_filter");
        assert_eq!(r["output"], json!([]));
        let refused = json!({"choices": [{"finish_reason": "stop", "message": {"content": null, "refusal": "No."}}]});
        let r = from_chat(&refused, &usage(), &ctx());
        assert_eq!(
            r["output"][0]["content"],
            json!([{"type": "refusal", "refusal": "No."}])
        );
    }

    #[test]
    fn anthropic_message_becomes_response_items() {
        let m = json!({"id": "msg_1", "type": "message", "stop_reason": "tool_use", "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "SIG"},
            {"type": "redacted_thinking", "data": "RED"},
            {"type": "text", "text": "Let me "}, {"type": "text", "text": "check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "apply_patch", "input": {"input": "patch"}},
            {"type": "text", "text": "Done."}]});
        let r = from_anthropic(&m, &usage(), &ctx());
        let out = r["output"].as_array().unwrap();
        let types: Vec<&str> = out.iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "reasoning",
                "reasoning",
                "message",
                "function_call",
                "custom_tool_call",
                "message"
            ]
        );
        assert_eq!(out[0]["summary"][0]["text"], "Hmm.");
        assert_eq!(out[0]["encrypted_content"], "ant-sig:SIG");
        assert_eq!(out[1]["summary"], json!([]));
        assert_eq!(out[1]["encrypted_content"], "ant-redacted:RED");
        assert_eq!(out[2]["content"][0]["text"], "Let me check.");
        assert_eq!(out[3]["call_id"], "toolu_1");
        assert_eq!(
            serde_json::from_str::<Value>(out[3]["arguments"].as_str().unwrap()).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(out[4]["input"], "patch");
        assert_eq!(r["status"], "completed");
        assert_eq!(r["usage"]["input_tokens"], 100);
        let cut =
            json!({"stop_reason": "max_tokens", "content": [{"type": "text", "text": "Once"}]});
        let r = from_anthropic(&cut, &usage(), &ctx());
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["output"][0]["status"], "incomplete");
    }

    #[test]
    fn reasoning_items_round_trip_to_anthropic_thinking() {
        let m = json!({"stop_reason": "end_turn", "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "SIG"}, {"type": "text", "text": "Hi"}]});
        let r = from_anthropic(&m, &usage(), &ctx());
        let req = json!({"model": "m", "input": [{"role": "user", "content": "q"}]});
        let body = super::super::request::to_anthropic(
            req.as_object().unwrap(),
            r["output"].as_array().unwrap(),
            10,
        )
        .unwrap();
        assert_eq!(
            body["messages"][0]["content"],
            json!([
            {"type": "thinking", "thinking": "Hmm.", "signature": "SIG"}, {"type": "text", "text": "Hi"}])
        );
        assert_eq!(body["messages"][1]["content"][0]["text"], "q");
        // The user's new turn follows the stored history.
        let req = json!({"model": "m", "input": "next"});
        let body = super::super::request::to_anthropic(
            req.as_object().unwrap(),
            r["output"].as_array().unwrap(),
            10,
        )
        .unwrap();
        assert_eq!(body["messages"][0]["role"], "assistant");
        assert_eq!(body["messages"][1]["content"][0]["text"], "next");
    }

    #[test]
    fn failed_response_has_error_and_usage() {
        let r = failed(
            &ctx(),
            "rate_limit_exceeded",
            "Please try again in 3s.",
            &Usage::default(),
        );
        assert_eq!(r["status"], "failed");
        assert_eq!(
            r["error"],
            json!({"code": "rate_limit_exceeded", "message": "Please try again in 3s."})
        );
        assert_eq!(r["output"], json!([]));
        assert_eq!(r["usage"]["output_tokens_details"]["reasoning_tokens"], 0);
    }
}
