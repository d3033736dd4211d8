//! Chat requests from one wire format to the other: system prompts, multi-turn messages,
//! images (URL and base64), tool definitions, tool calls and tool results, stop sequences,
//! token limits and sampling parameters. The target model name is set by the caller.

use serde_json::{Map, Value, json};

use super::Unsupported;

type Obj = Map<String, Value>;

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------
// OpenAI → Anthropic
// ---------------------------------------------------------------------------------------

/// An OpenAI `image_url` part as an Anthropic image block.
fn image_block(part: &Value) -> Result<Value, Unsupported> {
    let url = part
        .pointer("/image_url/url")
        .or_else(|| part.get("image_url"))
        .and_then(Value::as_str)
        .ok_or_else(|| Unsupported::new("messages", "An image_url part needs a url."))?;
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| Unsupported::new("messages", "Malformed data URL in image_url."))?;
        let media_type = meta.strip_suffix(";base64").ok_or_else(|| {
            Unsupported::new(
                "messages",
                "Only base64 data URLs are supported for images.",
            )
        })?;
        return Ok(json!({"type": "image", "source":
            {"type": "base64", "media_type": media_type, "data": data}}));
    }
    Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
}

/// OpenAI message content as Anthropic content blocks.
fn anthropic_blocks(content: &Value) -> Result<Vec<Value>, Unsupported> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => {
                    Ok(json!({"type": "text", "text": p.get("text").cloned().unwrap_or(json!(""))}))
                }
                Some("image_url") => image_block(p),
                Some(other) => Err(Unsupported::new(
                    "messages",
                    format!("Content parts of type '{other}' cannot be sent to this model."),
                )),
                None => Err(Unsupported::new("messages", "A content part has no type.")),
            })
            .collect(),
        _ => Err(Unsupported::new(
            "messages",
            "Message content must be a string or an array.",
        )),
    }
}

/// Appends `blocks` as a message of `role`, merging into the previous message when it has
/// the same role (Anthropic requires alternating roles).
fn push_turn(out: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = out.last_mut()
        && last.get("role").and_then(Value::as_str) == Some(role)
        && let Some(Value::Array(existing)) = last.get_mut("content")
    {
        existing.extend(blocks);
        return;
    }
    out.push(json!({"role": role, "content": blocks}));
}

fn anthropic_tools(tools: &[Value]) -> Result<Vec<Value>, Unsupported> {
    tools
        .iter()
        .map(|t| {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(Unsupported::new("tools", "Only function tools can be sent to this model."));
            }
            let f = t.get("function").cloned().unwrap_or(Value::Null);
            let name = f.get("name").and_then(Value::as_str).ok_or_else(|| {
                Unsupported::new("tools", "Every function tool needs a name.")
            })?;
            let mut tool = json!({
                "name": name,
                "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object", "properties": {}})),
            });
            if let Some(d) = f.get("description") {
                tool["description"] = d.clone();
            }
            Ok(tool)
        })
        .collect()
}

pub(super) fn anthropic_tool_choice(choice: &Value, parallel: Option<bool>) -> Option<Value> {
    let mut c = match choice {
        Value::String(s) if s == "none" => json!({"type": "none"}),
        Value::String(s) if s == "required" => json!({"type": "any"}),
        Value::Object(o) => {
            let name = o.get("function").and_then(|f| f.get("name")).cloned()?;
            json!({"type": "tool", "name": name})
        }
        _ => json!({"type": "auto"}),
    };
    if parallel == Some(false) && c["type"] != "none" {
        c["disable_parallel_tool_use"] = json!(true);
    }
    Some(c)
}

/// Translates an OpenAI chat-completions body to an Anthropic messages body.
/// `default_max_tokens` fills `max_tokens`, which Anthropic requires.
pub fn openai_to_anthropic(req: &Obj, default_max_tokens: i64) -> Result<Value, Unsupported> {
    if req.get("n").and_then(Value::as_i64).is_some_and(|n| n > 1) {
        return Err(Unsupported::new(
            "n",
            "This model can return only one choice (n must be 1).",
        ));
    }
    if req.get("logprobs").and_then(Value::as_bool) == Some(true)
        || req.get("top_logprobs").is_some_and(|v| !v.is_null())
    {
        return Err(Unsupported::new(
            "logprobs",
            "This model does not return log probabilities.",
        ));
    }
    if let Some(rf) = req.get("response_format")
        && rf
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "text")
    {
        return Err(Unsupported::new(
            "response_format",
            "This model does not support response_format; describe the format in the prompt instead.",
        ));
    }
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for m in req
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => {
                let text = text_of(content);
                if !text.is_empty() {
                    system.push(json!({"type": "text", "text": text}));
                }
            }
            "user" => push_turn(&mut messages, "user", anthropic_blocks(content)?),
            "assistant" => {
                let mut blocks = anthropic_blocks(content)?;
                for call in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let args = call
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}");
                    let input: Value = if args.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(args).map_err(|_| {
                            Unsupported::new(
                                "messages",
                                "Tool call arguments must be a JSON object.",
                            )
                        })?
                    };
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.get("id").cloned().unwrap_or(json!("")),
                        "name": call.pointer("/function/name").cloned().unwrap_or(json!("")),
                        "input": input,
                    }));
                }
                push_turn(&mut messages, "assistant", blocks);
            }
            "tool" | "function" => {
                let id = m
                    .get("tool_call_id")
                    .or_else(|| m.get("name"))
                    .cloned()
                    .unwrap_or(json!(""));
                push_turn(
                    &mut messages,
                    "user",
                    vec![
                        json!({"type": "tool_result", "tool_use_id": id, "content": text_of(content)}),
                    ],
                );
            }
            other => {
                return Err(Unsupported::new(
                    "messages",
                    format!("Unknown message role '{other}'."),
                ));
            }
        }
    }
    let max_tokens = req
        .get("max_completion_tokens")
        .or_else(|| req.get("max_tokens"))
        .and_then(Value::as_i64)
        .unwrap_or(default_max_tokens);
    let mut out = json!({"model": req.get("model").cloned().unwrap_or(Value::Null),
                         "messages": messages, "max_tokens": max_tokens});
    if !system.is_empty() {
        out["system"] = Value::Array(system);
    }
    if let Some(t) = req.get("temperature").and_then(Value::as_f64) {
        if t > 1.0 {
            return Err(Unsupported::new(
                "temperature",
                "This model accepts a temperature between 0 and 1.",
            ));
        }
        out["temperature"] = json!(t);
    }
    if let Some(p) = req.get("top_p").filter(|v| !v.is_null()) {
        out["top_p"] = p.clone();
    }
    match req.get("stop") {
        Some(Value::String(s)) => out["stop_sequences"] = json!([s]),
        Some(Value::Array(a)) if !a.is_empty() => out["stop_sequences"] = Value::Array(a.clone()),
        _ => {}
    }
    if let Some(tools) = req
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    {
        out["tools"] = Value::Array(anthropic_tools(tools)?);
        let parallel = req.get("parallel_tool_calls").and_then(Value::as_bool);
        if let Some(c) =
            anthropic_tool_choice(req.get("tool_choice").unwrap_or(&Value::Null), parallel)
        {
            out["tool_choice"] = c;
        }
    }
    if let Some(user) = req.get("user").and_then(Value::as_str) {
        out["metadata"] = json!({"user_id": user});
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        out["stream"] = json!(true);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Anthropic → OpenAI
// ---------------------------------------------------------------------------------------

fn openai_image(source: &Value) -> Result<Value, Unsupported> {
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => format!(
            "data:{};base64,{}",
            source
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("image/png"),
            source.get("data").and_then(Value::as_str).unwrap_or("")
        ),
        Some("url") => source
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        _ => {
            return Err(Unsupported::new(
                "messages",
                "Unsupported image source for this model.",
            ));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// The content of a `tool_result` block as text.
fn tool_result_text(block: &Value) -> String {
    let text = text_of(block.get("content").unwrap_or(&Value::Null));
    if block.get("is_error").and_then(Value::as_bool) == Some(true) {
        format!("Error: {text}")
    } else {
        text
    }
}

/// One Anthropic message as OpenAI messages (tool results become `tool` messages).
fn openai_messages(m: &Value, out: &mut Vec<Value>) -> Result<(), Unsupported> {
    let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
    let content = m.get("content").unwrap_or(&Value::Null);
    let blocks = match content {
        Value::String(s) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => {
            return Err(Unsupported::new(
                "messages",
                "Message content must be a string or an array.",
            ));
        }
    };
    let mut parts: Vec<Value> = Vec::new();
    let mut tool_calls: Vec<Value> = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => parts
                .push(json!({"type": "text", "text": b.get("text").cloned().unwrap_or(json!(""))})),
            Some("image") => parts.push(openai_image(b.get("source").unwrap_or(&Value::Null))?),
            Some("tool_use") => tool_calls.push(json!({
                "id": b.get("id").cloned().unwrap_or(json!("")),
                "type": "function",
                "function": {
                    "name": b.get("name").cloned().unwrap_or(json!("")),
                    "arguments": b.get("input").unwrap_or(&json!({})).to_string(),
                },
            })),
            Some("tool_result") => out.push(json!({
                "role": "tool",
                "tool_call_id": b.get("tool_use_id").cloned().unwrap_or(json!("")),
                "content": tool_result_text(b),
            })),
            // Reasoning traces of earlier turns have no OpenAI equivalent.
            Some("thinking" | "redacted_thinking") => {}
            Some(other) => {
                return Err(Unsupported::new(
                    "messages",
                    format!("Content blocks of type '{other}' cannot be sent to this model."),
                ));
            }
            None => return Err(Unsupported::new("messages", "A content block has no type.")),
        }
    }
    let only_text = parts.iter().all(|p| p["type"] == "text");
    let content = if parts.is_empty() {
        Value::Null
    } else if only_text || role == "assistant" {
        json!(
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("")
        )
    } else {
        Value::Array(parts)
    };
    if role == "assistant" {
        let mut msg = json!({"role": "assistant", "content": content});
        if !tool_calls.is_empty() {
            msg["tool_calls"] = Value::Array(tool_calls);
        }
        out.push(msg);
    } else if !content.is_null() {
        out.push(json!({"role": role, "content": content}));
    }
    Ok(())
}

/// Translates an Anthropic messages body to an OpenAI chat-completions body.
pub fn anthropic_to_openai(req: &Obj) -> Result<Value, Unsupported> {
    let mut messages: Vec<Value> = Vec::new();
    match req.get("system") {
        Some(Value::String(s)) if !s.is_empty() => {
            messages.push(json!({"role": "system", "content": s}))
        }
        Some(v @ Value::Array(_)) => {
            let text = text_of(v);
            if !text.is_empty() {
                messages.push(json!({"role": "system", "content": text}));
            }
        }
        _ => {}
    }
    for m in req
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        openai_messages(m, &mut messages)?;
    }
    let mut out =
        json!({"model": req.get("model").cloned().unwrap_or(Value::Null), "messages": messages});
    for k in ["max_tokens", "temperature", "top_p"] {
        if let Some(v) = req.get(k).filter(|v| !v.is_null()) {
            out[k] = v.clone();
        }
    }
    if let Some(stop) = req
        .get("stop_sequences")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
    {
        out["stop"] = Value::Array(stop.clone());
    }
    if let Some(tools) = req
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    {
        let mut converted = Vec::new();
        for t in tools {
            if t.get("type")
                .and_then(Value::as_str)
                .is_some_and(|ty| ty != "custom")
            {
                return Err(Unsupported::new(
                    "tools",
                    "Server tools cannot be sent to this model.",
                ));
            }
            let mut f = json!({"name": t.get("name").cloned().unwrap_or(json!("")),
                               "parameters": t.get("input_schema").cloned().unwrap_or(json!({"type": "object"}))});
            if let Some(d) = t.get("description") {
                f["description"] = d.clone();
            }
            converted.push(json!({"type": "function", "function": f}));
        }
        out["tools"] = Value::Array(converted);
        if let Some(choice) = req.get("tool_choice") {
            out["tool_choice"] = match choice.get("type").and_then(Value::as_str) {
                Some("any") => json!("required"),
                Some("none") => json!("none"),
                Some("tool") => {
                    json!({"type": "function", "function": {"name": choice.get("name").cloned().unwrap_or(json!(""))}})
                }
                _ => json!("auto"),
            };
            if choice
                .get("disable_parallel_tool_use")
                .and_then(Value::as_bool)
                == Some(true)
            {
                out["parallel_tool_calls"] = json!(false);
            }
        }
    }
    if let Some(user) = req
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out["user"] = json!(user);
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        out["stream"] = json!(true);
        out["stream_options"] = json!({"include_usage": true});
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Obj {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn openai_to_anthropic_covers_roles_tools_and_images() {
        let req = obj(json!({
            "model": "m", "temperature": 0.5, "stop": "END", "user": "u1",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "user", "content": "thanks"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required", "parallel_tool_calls": false
        }));
        let a = openai_to_anthropic(&req, 321).unwrap();
        assert_eq!(a["max_tokens"], 321);
        assert_eq!(a["system"][0]["text"], "Be brief.");
        assert_eq!(a["stop_sequences"], json!(["END"]));
        assert_eq!(a["metadata"]["user_id"], "u1");
        let msgs = a["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3, "{a}");
        assert_eq!(
            msgs[0]["content"][1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
        );
        assert_eq!(msgs[0]["content"][2]["source"]["type"], "url");
        assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
        assert_eq!(msgs[1]["content"][0]["input"]["city"], "Paris");
        // The tool result and the following user text merge into one user turn.
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(msgs[2]["content"][0]["tool_use_id"], "call_1");
        assert_eq!(msgs[2]["content"][1]["text"], "thanks");
        assert_eq!(
            a["tools"][0]["input_schema"]["properties"]["city"]["type"],
            "string"
        );
        assert_eq!(
            a["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn openai_to_anthropic_rejects_what_it_cannot_express() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        for (k, v) in [
            ("n", json!(2)),
            ("logprobs", json!(true)),
            ("temperature", json!(1.5)),
            ("response_format", json!({"type": "json_object"})),
        ] {
            let mut r = obj(base.clone());
            r.insert(k.into(), v);
            assert_eq!(
                openai_to_anthropic(&r, 10).unwrap_err().param.as_deref(),
                Some(k)
            );
        }
        let mut r = obj(base);
        r.insert("seed".into(), json!(7));
        r.insert("max_completion_tokens".into(), json!(9));
        let a = openai_to_anthropic(&r, 10).unwrap();
        assert!(a.get("seed").is_none());
        assert_eq!(a["max_tokens"], 9);
    }

    #[test]
    fn anthropic_to_openai_covers_system_tools_and_results() {
        let req = obj(json!({
            "model": "m", "max_tokens": 50, "system": [{"type": "text", "text": "Sys"}],
            "stop_sequences": ["X"], "stream": true, "top_k": 5,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "BBBB"}}]},
                {"role": "assistant", "content": [{"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
                    {"type": "text", "text": "and?"}]}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "get_weather"}
        }));
        let o = anthropic_to_openai(&req).unwrap();
        let msgs = o["messages"].as_array().unwrap();
        assert_eq!(msgs[0], json!({"role": "system", "content": "Sys"}));
        assert_eq!(
            msgs[1]["content"][1]["image_url"]["url"],
            "data:image/jpeg;base64,BBBB"
        );
        assert_eq!(
            msgs[2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(msgs[2]["content"], "calling");
        assert_eq!(
            msgs[3],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"})
        );
        assert_eq!(msgs[4], json!({"role": "user", "content": "and?"}));
        assert_eq!(o["stop"], json!(["X"]));
        assert_eq!(o["max_tokens"], 50);
        assert!(o.get("top_k").is_none());
        assert_eq!(o["stream_options"]["include_usage"], true);
        assert_eq!(o["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(o["tool_choice"]["function"]["name"], "get_weather");
    }
}
