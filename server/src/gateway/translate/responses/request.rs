//! Responses requests to the chat formats upstreams speak: the conversation (stored
//! history of a `previous_response_id` chain, then this request's `input` items) becomes
//! Chat Completions messages or Anthropic Messages turns; instructions, tools (function,
//! custom and namespaced; hosted ones dropped), tool choice, structured output, limits and
//! sampling follow. The parameter rule is in [`super`]. The target model name is set by
//! the caller; the client's input items as stored and listed come from [`input_items`].

use serde_json::{Value, json};

use super::super::Unsupported;
use super::super::request::anthropic_tool_choice;
use super::{Obj, REDACTED_MARK, SIGNATURE_MARK, new_item_id};

/// One content part of a message or tool output.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Image {
        url: String,
        detail: Option<Value>,
    },
    File {
        data: Option<String>,
        url: Option<String>,
        filename: Option<String>,
    },
}

/// One step of the conversation, in a neutral form both renderers read.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    System(String),
    User(Vec<Part>),
    Assistant(String),
    /// A tool call; `arguments` is a JSON text (a custom tool's input is wrapped in
    /// `{"input": …}`, as the function it is sent upstream as takes it).
    Call {
        call_id: String,
        name: String,
        arguments: String,
    },
    /// A tool's result.
    Output {
        call_id: String,
        parts: Vec<Part>,
    },
    /// A reasoning item: its summary text and `encrypted_content`.
    Reasoning {
        text: String,
        encrypted: Option<String>,
    },
}

fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn parts(content: &Value, param: &str) -> Result<Vec<Part>, Unsupported> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![Part::Text(s.clone())]),
        Value::Array(items) => items.iter().map(|p| part(p, param)).collect(),
        _ => Err(Unsupported::new(
            param,
            "Content must be a string or an array of content parts.",
        )),
    }
}

fn part(p: &Value, param: &str) -> Result<Part, Unsupported> {
    match str_of(p, "type") {
        Some("input_text" | "output_text" | "text") => {
            Ok(Part::Text(str_of(p, "text").unwrap_or("").to_string()))
        }
        Some("refusal") => Ok(Part::Text(str_of(p, "refusal").unwrap_or("").to_string())),
        Some("input_image") => match str_of(p, "image_url") {
            Some(url) => Ok(Part::Image {
                url: url.to_string(),
                detail: p.get("detail").filter(|d| !d.is_null()).cloned(),
            }),
            None => Err(Unsupported::new(
                param,
                "Images must be given by image_url (a URL or a data URL); file ids are not supported.",
            )),
        },
        Some("input_file") => {
            let data = str_of(p, "file_data").map(str::to_string);
            let url = str_of(p, "file_url").map(str::to_string);
            if data.is_none() && url.is_none() {
                return Err(Unsupported::new(
                    param,
                    "Files must be given by file_data or file_url; file ids are not supported.",
                ));
            }
            Ok(Part::File {
                data,
                url,
                filename: str_of(p, "filename").map(str::to_string),
            })
        }
        Some(other) => Err(Unsupported::new(
            param,
            format!("Content parts of type '{other}' cannot be sent to this model."),
        )),
        None => Err(Unsupported::new(param, "A content part has no type.")),
    }
}

fn joined_text(parts: &[Part]) -> String {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A tool output (`output` of a `function_call_output`): a string or content parts.
fn output_parts(output: &Value) -> Result<Vec<Part>, Unsupported> {
    match output {
        Value::String(s) => Ok(vec![Part::Text(s.clone())]),
        Value::Null => Ok(Vec::new()),
        Value::Array(_) => parts(output, "input"),
        other => Ok(vec![Part::Text(other.to_string())]),
    }
}

/// One input item as conversation entries (none for what is dropped).
fn item_entries(item: &Value, out: &mut Vec<Entry>) -> Result<(), Unsupported> {
    if !item.is_object() {
        return Err(Unsupported::new(
            "input",
            "Every input item must be an object.",
        ));
    }
    let ty = str_of(item, "type").or_else(|| item.get("role").map(|_| "message"));
    let call_id = || str_of(item, "call_id").unwrap_or("").to_string();
    match ty {
        Some("message") => {
            let content = parts(item.get("content").unwrap_or(&Value::Null), "input")?;
            match str_of(item, "role") {
                Some("system" | "developer") => out.push(Entry::System(joined_text(&content))),
                Some("user") => out.push(Entry::User(content)),
                Some("assistant") => {
                    if content.iter().any(|p| !matches!(p, Part::Text(_))) {
                        return Err(Unsupported::new(
                            "input",
                            "Assistant messages can only hold text.",
                        ));
                    }
                    out.push(Entry::Assistant(
                        content
                            .iter()
                            .filter_map(|p| match p {
                                Part::Text(t) => Some(t.as_str()),
                                _ => None,
                            })
                            .collect(),
                    ));
                }
                Some(other) => {
                    return Err(Unsupported::new(
                        "input",
                        format!("Unknown message role '{other}'."),
                    ));
                }
                None => return Err(Unsupported::new("input", "A message item needs a role.")),
            }
        }
        Some("function_call") => out.push(Entry::Call {
            call_id: call_id(),
            name: str_of(item, "name").unwrap_or("").to_string(),
            arguments: str_of(item, "arguments").unwrap_or("{}").to_string(),
        }),
        Some("custom_tool_call") => out.push(Entry::Call {
            call_id: call_id(),
            name: str_of(item, "name").unwrap_or("").to_string(),
            arguments: json!({"input": str_of(item, "input").unwrap_or("")}).to_string(),
        }),
        Some("function_call_output" | "custom_tool_call_output") => out.push(Entry::Output {
            call_id: call_id(),
            parts: output_parts(item.get("output").unwrap_or(&Value::Null))?,
        }),
        Some("reasoning") => out.push(Entry::Reasoning {
            text: item
                .get("summary")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| str_of(s, "text"))
                .collect::<Vec<_>>()
                .join("\n\n"),
            encrypted: str_of(item, "encrypted_content").map(str::to_string),
        }),
        Some("item_reference") => {
            return Err(Unsupported::new(
                "input",
                "Item references are not supported; send the items themselves or use previous_response_id.",
            ));
        }
        Some(other) => {
            return Err(Unsupported::new(
                "input",
                format!("Input items of type '{other}' cannot be sent to this model."),
            ));
        }
        None => return Err(Unsupported::new("input", "An input item has no type.")),
    }
    Ok(())
}

/// The whole conversation: instructions, the stored history, this request's input.
fn conversation(req: &Obj, history: &[Value]) -> Result<Vec<Entry>, Unsupported> {
    let mut out = Vec::new();
    match req.get("instructions") {
        Some(Value::String(s)) if !s.is_empty() => out.push(Entry::System(s.clone())),
        Some(Value::Array(items)) => {
            let mut inner = Vec::new();
            for i in items {
                item_entries(i, &mut inner)?;
            }
            for e in inner {
                match e {
                    Entry::System(t) => out.push(Entry::System(t)),
                    Entry::User(p) => out.push(Entry::System(joined_text(&p))),
                    _ => {
                        return Err(Unsupported::new(
                            "instructions",
                            "Instructions can only hold messages.",
                        ));
                    }
                }
            }
        }
        Some(Value::String(_) | Value::Null) | None => {}
        Some(_) => {
            return Err(Unsupported::new(
                "instructions",
                "Instructions must be a string or a list of messages.",
            ));
        }
    }
    for item in history {
        item_entries(item, &mut out)?;
    }
    match req.get("input") {
        Some(Value::String(s)) => out.push(Entry::User(vec![Part::Text(s.clone())])),
        Some(Value::Array(items)) => {
            for item in items {
                item_entries(item, &mut out)?;
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(Unsupported::new(
                "input",
                "Input must be a string or a list of items.",
            ));
        }
    }
    Ok(out)
}

/// Fields no upstream can honour, whatever its format.
fn reject_common(req: &Obj) -> Result<(), Unsupported> {
    if req.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(Unsupported::new(
            "background",
            "Background responses are not supported.",
        ));
    }
    for k in ["conversation", "prompt"] {
        if req.get(k).is_some_and(|v| !v.is_null()) {
            return Err(Unsupported::new(
                k,
                format!("The '{k}' parameter is not supported; send the input items instead."),
            ));
        }
    }
    if req
        .get("top_logprobs")
        .and_then(Value::as_i64)
        .is_some_and(|n| n > 0)
    {
        return Err(Unsupported::new(
            "top_logprobs",
            "This model does not return log probabilities.",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------

/// A client tool as the function it is sent upstream as.
struct Function {
    name: String,
    description: Option<String>,
    parameters: Value,
    strict: Option<bool>,
}

/// The schema of the function a custom tool becomes: one string, `input`, described by
/// the tool's grammar when it has one.
fn custom_schema(tool: &Value) -> Value {
    let mut input = json!({"type": "string"});
    let format = tool.get("format").unwrap_or(&Value::Null);
    if str_of(format, "type") == Some("grammar") {
        input["description"] = json!(format!(
            "Free-form input that must match this {} grammar:\n{}",
            str_of(format, "syntax").unwrap_or("lark"),
            str_of(format, "definition").unwrap_or("")
        ));
    } else {
        input["description"] = json!("Free-form text input for the tool.");
    }
    json!({"type": "object", "properties": {"input": input}, "required": ["input"],
        "additionalProperties": false})
}

fn collect_functions(tool: &Value, out: &mut Vec<Function>) -> Result<(), Unsupported> {
    let name = || {
        str_of(tool, "name").map(str::to_string).ok_or_else(|| {
            Unsupported::new("tools", "Every function and custom tool needs a name.")
        })
    };
    let description = str_of(tool, "description").map(str::to_string);
    match str_of(tool, "type") {
        Some("function") => out.push(Function {
            name: name()?,
            description,
            parameters: tool
                .get("parameters")
                .filter(|p| p.is_object())
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            strict: tool.get("strict").and_then(Value::as_bool),
        }),
        Some("custom") => out.push(Function {
            name: name()?,
            description,
            parameters: custom_schema(tool),
            strict: None,
        }),
        Some("namespace") => {
            for inner in tool
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                collect_functions(inner, out)?;
            }
        }
        // Hosted tools: no upstream runs them; offered, not required (see the module rule).
        Some(_) => {}
        None => return Err(Unsupported::new("tools", "A tool has no type.")),
    }
    Ok(())
}

/// How the model must use tools, in a neutral form.
#[derive(Debug, Clone, PartialEq)]
enum Choice {
    Auto,
    None,
    Required,
    Named(String),
}

impl Choice {
    /// The Chat Completions `tool_choice` (Anthropic's is derived from it by
    /// [`anthropic_tool_choice`], as for chat clients).
    fn chat(&self) -> Value {
        match self {
            Choice::Auto => json!("auto"),
            Choice::None => json!("none"),
            Choice::Required => json!("required"),
            Choice::Named(n) => json!({"type": "function", "function": {"name": n}}),
        }
    }
}

/// The client's functions (after `allowed_tools` narrowing) and the tool choice.
fn tools_and_choice(req: &Obj) -> Result<(Vec<Function>, Option<Choice>), Unsupported> {
    let mut functions = Vec::new();
    for t in req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect_functions(t, &mut functions)?;
    }
    let choice = match req.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(Choice::Auto),
            "none" => Some(Choice::None),
            "required" => Some(Choice::Required),
            other => {
                return Err(Unsupported::new(
                    "tool_choice",
                    format!("Unknown tool_choice '{other}'."),
                ));
            }
        },
        Some(c @ Value::Object(_)) => match str_of(c, "type") {
            Some("function" | "custom") => Some(Choice::Named(
                str_of(c, "name")
                    .ok_or_else(|| {
                        Unsupported::new("tool_choice", "A named tool_choice needs a name.")
                    })?
                    .to_string(),
            )),
            Some("allowed_tools") => {
                let allowed: Vec<&str> = c
                    .get("tools")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|t| str_of(t, "name"))
                    .collect();
                functions.retain(|f| allowed.contains(&f.name.as_str()));
                match str_of(c, "mode") {
                    Some("required") => Some(Choice::Required),
                    _ => Some(Choice::Auto),
                }
            }
            Some(other) => {
                return Err(Unsupported::new(
                    "tool_choice",
                    format!("This model cannot be made to use the hosted tool '{other}'."),
                ));
            }
            None => return Err(Unsupported::new("tool_choice", "tool_choice needs a type.")),
        },
        Some(_) => {
            return Err(Unsupported::new(
                "tool_choice",
                "tool_choice must be a string or an object.",
            ));
        }
    };
    if choice == Some(Choice::Required) && functions.is_empty() {
        return Err(Unsupported::new(
            "tool_choice",
            "tool_choice requires a tool call, but this model can call none of the tools given.",
        ));
    }
    if let Some(Choice::Named(n)) = &choice
        && !functions.iter().any(|f| &f.name == n)
    {
        return Err(Unsupported::new(
            "tool_choice",
            format!("tool_choice names '{n}', which is not among the tools."),
        ));
    }
    Ok((functions, choice))
}

// ---------------------------------------------------------------------------------------
// To Chat Completions
// ---------------------------------------------------------------------------------------

fn chat_parts(parts: &[Part], param: &str) -> Result<Value, Unsupported> {
    if let [Part::Text(t)] = parts {
        return Ok(json!(t));
    }
    let converted: Result<Vec<Value>, Unsupported> = parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => Ok(json!({"type": "text", "text": t})),
            Part::Image { url, detail } => {
                let mut image = json!({"url": url});
                if let Some(d) = detail {
                    image["detail"] = d.clone();
                }
                Ok(json!({"type": "image_url", "image_url": image}))
            }
            Part::File {
                data: Some(data),
                filename,
                ..
            } => {
                let mut file = json!({"file_data": data});
                if let Some(f) = filename {
                    file["filename"] = json!(f);
                }
                Ok(json!({"type": "file", "file": file}))
            }
            Part::File { .. } => Err(Unsupported::new(
                param,
                "This model takes files only as file_data, not by file_url.",
            )),
        })
        .collect();
    Ok(Value::Array(converted?))
}

/// Images and files returned by tools, as the user message that follows the tool
/// messages.
fn flush_deferred(messages: &mut Vec<Value>, deferred: &mut Vec<Part>) -> Result<(), Unsupported> {
    if deferred.is_empty() {
        return Ok(());
    }
    let parts = std::mem::take(deferred);
    let content = match chat_parts(&parts, "input")? {
        Value::Array(a) => Value::Array(a),
        single => json!([{"type": "text", "text": single}]),
    };
    messages.push(json!({"role": "user", "content": content}));
    Ok(())
}

/// Translates a Responses request, after the stored `history` items of its
/// `previous_response_id` chain (oldest first), to a Chat Completions body. `cap_field`
/// is the provider's output-cap field (`max_tokens` or `max_completion_tokens`). Every
/// system and developer message joins one leading system message (many chat servers
/// accept none elsewhere). Streams always ask for usage.
pub fn to_chat(req: &Obj, history: &[Value], cap_field: &str) -> Result<Value, Unsupported> {
    reject_common(req)?;
    let entries = conversation(req, history)?;
    let mut system: Vec<String> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut deferred: Vec<Part> = Vec::new();
    for e in entries {
        if !matches!(
            e,
            Entry::Output { .. } | Entry::Reasoning { .. } | Entry::System(_)
        ) {
            flush_deferred(&mut messages, &mut deferred)?;
        }
        match e {
            Entry::System(t) => {
                if !t.is_empty() {
                    system.push(t);
                }
            }
            Entry::User(p) => {
                messages.push(json!({"role": "user", "content": chat_parts(&p, "input")?}))
            }
            Entry::Assistant(t) => messages.push(json!({"role": "assistant", "content": t})),
            Entry::Call {
                call_id,
                name,
                arguments,
            } => {
                let call = json!({"id": call_id, "type": "function",
                    "function": {"name": name, "arguments": arguments}});
                // Consecutive calls (and the text before them) are one assistant message.
                match messages.last_mut() {
                    Some(last) if last["role"] == "assistant" => {
                        if let Some(Value::Array(calls)) = last.get_mut("tool_calls") {
                            calls.push(call);
                        } else {
                            last["tool_calls"] = json!([call]);
                        }
                    }
                    _ => messages
                        .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
                }
            }
            Entry::Output { call_id, parts } => {
                // Chat tool messages hold text only: images and files a tool returned
                // follow the tool messages of that turn as a user message.
                let (text, other): (Vec<Part>, Vec<Part>) =
                    parts.into_iter().partition(|p| matches!(p, Part::Text(_)));
                messages.push(
                    json!({"role": "tool", "tool_call_id": call_id, "content": joined_text(&text)}),
                );
                deferred.extend(other);
            }
            Entry::Reasoning { .. } => {}
        }
    }
    flush_deferred(&mut messages, &mut deferred)?;
    if !system.is_empty() {
        messages.insert(0, json!({"role": "system", "content": system.join("\n\n")}));
    }
    let mut out =
        json!({"model": req.get("model").cloned().unwrap_or(Value::Null), "messages": messages});
    let (functions, choice) = tools_and_choice(req)?;
    if !functions.is_empty() {
        let tools: Vec<Value> = functions
            .into_iter()
            .map(|f| {
                let mut function = json!({"name": f.name, "parameters": f.parameters});
                if let Some(d) = f.description {
                    function["description"] = json!(d);
                }
                if let Some(s) = f.strict {
                    function["strict"] = json!(s);
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        out["tools"] = Value::Array(tools);
        if let Some(c) = &choice {
            out["tool_choice"] = c.chat();
        }
        if let Some(p) = req.get("parallel_tool_calls").and_then(Value::as_bool) {
            out["parallel_tool_calls"] = json!(p);
        }
    }
    if let Some(n) = req.get("max_output_tokens").and_then(Value::as_i64) {
        out[cap_field] = json!(n);
    }
    for k in ["temperature", "top_p"] {
        if let Some(v) = req.get(k).filter(|v| v.is_number()) {
            out[k] = v.clone();
        }
    }
    if let Some(format) = req
        .get("text")
        .and_then(|t| t.get("format"))
        .filter(|f| f.is_object())
    {
        match str_of(format, "type") {
            Some("text") | None => {}
            Some("json_object") => out["response_format"] = json!({"type": "json_object"}),
            Some("json_schema") => {
                let mut schema = json!({"name": str_of(format, "name").unwrap_or("response"),
                    "schema": format.get("schema").cloned().unwrap_or(json!({}))});
                for k in ["description", "strict"] {
                    if let Some(v) = format.get(k).filter(|v| !v.is_null()) {
                        schema[k] = v.clone();
                    }
                }
                out["response_format"] = json!({"type": "json_schema", "json_schema": schema});
            }
            Some(other) => {
                return Err(Unsupported::new(
                    "text",
                    format!("Unknown text format '{other}'."),
                ));
            }
        }
    }
    if let Some(effort) = req
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .filter(|e| e.is_string())
    {
        out["reasoning_effort"] = effort.clone();
    }
    if let Some(user) = req.get("user").filter(|u| u.is_string()) {
        out["user"] = user.clone();
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        out["stream"] = json!(true);
        out["stream_options"] = json!({"include_usage": true});
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// To Anthropic Messages
// ---------------------------------------------------------------------------------------

/// A data URL's media type and base64 payload.
fn data_url(url: &str) -> Option<(&str, &str)> {
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    Some((meta.strip_suffix(";base64")?, data))
}

fn anthropic_part(p: &Part) -> Result<Value, Unsupported> {
    Ok(match p {
        Part::Text(t) => json!({"type": "text", "text": t}),
        Part::Image { url, .. } if url.starts_with("data:") => {
            let (media_type, data) = data_url(url)
                .ok_or_else(|| Unsupported::new("input", "Images in data URLs must be base64."))?;
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
        }
        Part::Image { url, .. } => json!({"type": "image", "source": {"type": "url", "url": url}}),
        Part::File {
            data: Some(d),
            filename,
            ..
        } => {
            let (media_type, data) = data_url(d).unwrap_or(("application/pdf", d.as_str()));
            let mut doc = json!({"type": "document",
                "source": {"type": "base64", "media_type": media_type, "data": data}});
            if let Some(f) = filename {
                doc["title"] = json!(f);
            }
            doc
        }
        Part::File { url: Some(u), .. } => {
            json!({"type": "document", "source": {"type": "url", "url": u}})
        }
        Part::File { .. } => {
            return Err(Unsupported::new(
                "input",
                "A file needs file_data or file_url.",
            ));
        }
    })
}

/// Appends `blocks` as a turn of `role`, merging into the previous turn of the same role
/// (Anthropic requires alternating roles).
fn push_turn(out: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = out.last_mut()
        && last["role"] == role
        && let Some(Value::Array(existing)) = last.get_mut("content")
    {
        existing.extend(blocks);
        return;
    }
    out.push(json!({"role": role, "content": blocks}));
}

/// A reasoning item as the Anthropic thinking block it came from, if it did.
fn thinking_block(text: &str, encrypted: Option<&str>) -> Option<Value> {
    let e = encrypted?;
    if let Some(sig) = e.strip_prefix(SIGNATURE_MARK) {
        return Some(json!({"type": "thinking", "thinking": text, "signature": sig}));
    }
    e.strip_prefix(REDACTED_MARK)
        .map(|data| json!({"type": "redacted_thinking", "data": data}))
}

/// Translates a Responses request, after its stored `history`, to an Anthropic Messages
/// body. `default_max_tokens` fills `max_tokens` (Anthropic requires it) when the client
/// gave no `max_output_tokens`.
pub fn to_anthropic(
    req: &Obj,
    history: &[Value],
    default_max_tokens: i64,
) -> Result<Value, Unsupported> {
    reject_common(req)?;
    if let Some(t) = req
        .get("text")
        .and_then(|t| t.get("format"))
        .and_then(|f| str_of(f, "type"))
        .filter(|t| *t != "text")
    {
        return Err(Unsupported::new(
            "text",
            format!(
                "This model does not support the '{t}' text format; describe the format in the prompt instead."
            ),
        ));
    }
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for e in conversation(req, history)? {
        match e {
            Entry::System(t) => {
                if !t.is_empty() {
                    system.push(json!({"type": "text", "text": t}));
                }
            }
            Entry::User(p) => {
                let blocks = p
                    .iter()
                    .filter(|p| !matches!(p, Part::Text(t) if t.is_empty()))
                    .map(anthropic_part)
                    .collect::<Result<Vec<_>, _>>()?;
                push_turn(&mut messages, "user", blocks);
            }
            Entry::Assistant(t) => {
                if !t.is_empty() {
                    push_turn(
                        &mut messages,
                        "assistant",
                        vec![json!({"type": "text", "text": t})],
                    );
                }
            }
            Entry::Call {
                call_id,
                name,
                arguments,
            } => {
                let input: Value = if arguments.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(&arguments).map_err(|_| {
                        Unsupported::new("input", "Function call arguments must be a JSON object.")
                    })?
                };
                push_turn(
                    &mut messages,
                    "assistant",
                    vec![json!({"type": "tool_use", "id": call_id, "name": name, "input": input})],
                );
            }
            Entry::Output { call_id, parts } => {
                let content = if parts.iter().all(|p| matches!(p, Part::Text(_))) {
                    json!(joined_text(&parts))
                } else {
                    Value::Array(parts.iter().map(anthropic_part).collect::<Result<_, _>>()?)
                };
                push_turn(
                    &mut messages,
                    "user",
                    vec![
                        json!({"type": "tool_result", "tool_use_id": call_id, "content": content}),
                    ],
                );
            }
            Entry::Reasoning { text, encrypted } => {
                if let Some(block) = thinking_block(&text, encrypted.as_deref()) {
                    push_turn(&mut messages, "assistant", vec![block]);
                }
            }
        }
    }
    let max_tokens = req
        .get("max_output_tokens")
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
    if let Some(p) = req.get("top_p").filter(|v| v.is_number()) {
        out["top_p"] = p.clone();
    }
    let (functions, choice) = tools_and_choice(req)?;
    if !functions.is_empty() {
        out["tools"] = Value::Array(
            functions
                .into_iter()
                .map(|f| {
                    let mut t = json!({"name": f.name, "input_schema": f.parameters});
                    if let Some(d) = f.description {
                        t["description"] = json!(d);
                    }
                    t
                })
                .collect(),
        );
        let parallel = req.get("parallel_tool_calls").and_then(Value::as_bool);
        if choice.is_some() || parallel == Some(false) {
            let chat = choice.as_ref().map_or(Value::Null, Choice::chat);
            if let Some(c) = anthropic_tool_choice(&chat, parallel) {
                out["tool_choice"] = c;
            }
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
// Input items as stored
// ---------------------------------------------------------------------------------------

fn id_prefix(ty: &str) -> &'static str {
    match ty {
        "message" => "msg",
        "function_call" => "fc",
        "function_call_output" => "fco",
        "custom_tool_call" => "ctc",
        "custom_tool_call_output" => "ctco",
        "reasoning" => "rs",
        _ => "item",
    }
}

/// The input items of a request as stored and listed by `input_items`: a string input is
/// one user message with an `input_text` part; messages get `type`, content parts
/// (`input_text` for user, system and developer, `output_text` for the assistant); every
/// item but a reasoning one gets a status, and every item an id, unless it has them.
pub fn input_items(req: &Obj) -> Result<Vec<Value>, Unsupported> {
    let items: Vec<Value> = match req.get("input") {
        Some(Value::String(s)) => {
            vec![
                json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": s}]}),
            ]
        }
        Some(Value::Array(items)) => items.clone(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            return Err(Unsupported::new(
                "input",
                "Input must be a string or a list of items.",
            ));
        }
    };
    items
        .into_iter()
        .map(|mut item| {
            let Some(o) = item.as_object_mut() else {
                return Err(Unsupported::new(
                    "input",
                    "Every input item must be an object.",
                ));
            };
            if !o.contains_key("type") && o.contains_key("role") {
                o.insert("type".into(), json!("message"));
            }
            let ty = o
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if ty == "message" {
                let text_type = if o.get("role").and_then(Value::as_str) == Some("assistant") {
                    "output_text"
                } else {
                    "input_text"
                };
                if let Some(Value::String(s)) = o.get("content") {
                    let mut p = json!({"type": text_type, "text": s});
                    if text_type == "output_text" {
                        p["annotations"] = json!([]);
                    }
                    o.insert("content".into(), json!([p]));
                }
            }
            // Listed items carry a status (the SDK's item types require it), reasoning
            // items excepted.
            if ty != "reasoning" {
                o.entry("status").or_insert(json!("completed"));
            }
            if o.get("id").is_none_or(|id| !id.is_string()) {
                o.insert("id".into(), json!(new_item_id(id_prefix(&ty))));
            }
            Ok(item)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Obj {
        v.as_object().unwrap().clone()
    }

    /// A Codex-like turn: instructions, developer and user messages, a reasoning item,
    /// a function call with its output, a custom apply_patch call with its output,
    /// hosted web_search offered.
    fn codex_request() -> Obj {
        obj(json!({
            "model": "gpt-5-codex",
            "instructions": "You are Codex.",
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Sandbox: workspace-write."}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix the bug."}]},
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Look first."}],
                 "encrypted_content": "ant-sig:SIG1"},
                {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "shell", "arguments": "{\"cmd\":\"ls\"}"},
                {"type": "function_call", "id": "fc_2", "call_id": "call_b", "name": "shell", "arguments": "{\"cmd\":\"pwd\"}"},
                {"type": "function_call_output", "call_id": "call_a", "output": "main.rs"},
                {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "/src"}]},
                {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_c", "name": "apply_patch", "input": "*** Begin Patch\n*** End Patch\n"},
                {"type": "custom_tool_call_output", "call_id": "call_c", "output": "Done!"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Fixed.", "annotations": []}]},
                {"type": "message", "role": "user", "content": "Thanks"}
            ],
            "tools": [
                {"type": "function", "name": "shell", "description": "Run", "strict": false,
                 "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
                {"type": "custom", "name": "apply_patch", "description": "Patch files",
                 "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"}},
                {"type": "web_search", "external_web_access": false}
            ],
            "tool_choice": "auto", "parallel_tool_calls": false,
            "reasoning": {"effort": "medium", "summary": "auto"},
            "store": false, "stream": true, "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "conv-1", "max_output_tokens": 1000, "service_tier": "auto",
            "truncation": "auto", "metadata": {"a": "b"}, "text": {"verbosity": "low"}
        }))
    }

    #[test]
    fn codex_turn_to_chat() {
        let c = to_chat(&codex_request(), &[], "max_completion_tokens").unwrap();
        let m = c["messages"].as_array().unwrap();
        assert_eq!(
            m[0],
            json!({"role": "system", "content": "You are Codex.\n\nSandbox: workspace-write."})
        );
        assert_eq!(m[1], json!({"role": "user", "content": "Fix the bug."}));
        // Reasoning dropped; both calls in one assistant message.
        assert_eq!(m[2]["role"], "assistant");
        assert_eq!(m[2]["content"], Value::Null);
        assert_eq!(m[2]["tool_calls"][0]["id"], "call_a");
        assert_eq!(
            m[2]["tool_calls"][1]["function"]["arguments"],
            "{\"cmd\":\"pwd\"}"
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "call_a", "content": "main.rs"})
        );
        assert_eq!(
            m[4],
            json!({"role": "tool", "tool_call_id": "call_b", "content": "/src"})
        );
        // The custom tool call goes as a call of the function it became.
        assert_eq!(m[5]["tool_calls"][0]["function"]["name"], "apply_patch");
        let args: Value = serde_json::from_str(
            m[5]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(args, json!({"input": "*** Begin Patch\n*** End Patch\n"}));
        assert_eq!(
            m[6],
            json!({"role": "tool", "tool_call_id": "call_c", "content": "Done!"})
        );
        assert_eq!(m[7], json!({"role": "assistant", "content": "Fixed."}));
        assert_eq!(m[8], json!({"role": "user", "content": "Thanks"}));
        assert_eq!(m.len(), 9);
        // Tools: web_search dropped, apply_patch a one-string function with its grammar.
        let tools = c["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 2);
        assert_eq!(tools[0]["function"]["strict"], false);
        let patch = &tools[1]["function"];
        assert_eq!(patch["name"], "apply_patch");
        assert_eq!(patch["parameters"]["required"], json!(["input"]));
        assert!(
            patch["parameters"]["properties"]["input"]["description"]
                .as_str()
                .unwrap()
                .contains("start: begin_patch")
        );
        assert_eq!(c["tool_choice"], "auto");
        assert_eq!(c["parallel_tool_calls"], false);
        assert_eq!(c["max_completion_tokens"], 1000);
        assert!(c.get("max_tokens").is_none());
        assert_eq!(c["reasoning_effort"], "medium");
        assert_eq!(c["stream_options"], json!({"include_usage": true}));
        for k in [
            "store",
            "include",
            "prompt_cache_key",
            "service_tier",
            "truncation",
            "metadata",
            "text",
            "verbosity",
            "input",
            "instructions",
        ] {
            assert!(c.get(k).is_none(), "{k} leaked: {c}");
        }
    }

    #[test]
    fn codex_turn_to_anthropic() {
        let a = to_anthropic(&codex_request(), &[], 64).unwrap();
        assert_eq!(a["max_tokens"], 1000);
        assert_eq!(
            a["system"],
            json!([{"type": "text", "text": "You are Codex."},
            {"type": "text", "text": "Sandbox: workspace-write."}])
        );
        let m = a["messages"].as_array().unwrap();
        assert_eq!(
            m[0],
            json!({"role": "user", "content": [{"type": "text", "text": "Fix the bug."}]})
        );
        // Thinking first, then both tool uses, in one assistant turn.
        assert_eq!(m[1]["role"], "assistant");
        assert_eq!(
            m[1]["content"][0],
            json!({"type": "thinking", "thinking": "Look first.", "signature": "SIG1"})
        );
        assert_eq!(m[1]["content"][1]["input"], json!({"cmd": "ls"}));
        assert_eq!(m[1]["content"][2]["id"], "call_b");
        assert_eq!(
            m[2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "call_a", "content": "main.rs"})
        );
        assert_eq!(m[2]["content"][1]["tool_use_id"], "call_b");
        assert_eq!(
            m[3]["content"][0]["input"],
            json!({"input": "*** Begin Patch\n*** End Patch\n"})
        );
        assert_eq!(m[4]["content"][0]["content"], "Done!");
        assert_eq!(m[5]["content"], json!([{"type": "text", "text": "Fixed."}]));
        assert_eq!(m[6]["content"], json!([{"type": "text", "text": "Thanks"}]));
        assert_eq!(m.len(), 7);
        assert_eq!(a["tools"].as_array().unwrap().len(), 2);
        assert_eq!(
            a["tools"][1]["input_schema"]["properties"]["input"]["type"],
            "string"
        );
        assert_eq!(
            a["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        assert_eq!(a["stream"], true);
        for k in [
            "reasoning",
            "thinking",
            "store",
            "metadata",
            "stream_options",
        ] {
            assert!(a.get(k).is_none(), "{k} leaked: {a}");
        }
    }

    #[test]
    fn history_comes_before_the_input_and_strings_are_user_messages() {
        let history = [
            json!({"id": "msg_0", "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_text", "text": "What is the weather?"}]}),
            json!({"id": "fc_0", "type": "function_call", "status": "completed", "call_id": "call_0",
                "name": "weather", "arguments": "{}"}),
        ];
        let req = obj(
            json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "call_0", "output": "sunny"}],
            "max_output_tokens": 20}),
        );
        let c = to_chat(&req, &history, "max_tokens").unwrap();
        assert_eq!(c["messages"][0]["content"], "What is the weather?");
        assert_eq!(c["messages"][1]["tool_calls"][0]["id"], "call_0");
        assert_eq!(c["messages"][2]["content"], "sunny");
        assert_eq!(c["max_tokens"], 20);
        let s = to_chat(
            &obj(json!({"model": "m", "input": "hi"})),
            &[],
            "max_tokens",
        )
        .unwrap();
        assert_eq!(s["messages"], json!([{"role": "user", "content": "hi"}]));
        assert!(s.get("max_tokens").is_none() && s.get("stream").is_none());
        let a = to_anthropic(&obj(json!({"model": "m", "input": "hi"})), &[], 99).unwrap();
        assert_eq!(a["max_tokens"], 99);
        assert_eq!(
            a["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
        );
    }

    #[test]
    fn images_and_files_reach_both_formats() {
        let req = obj(json!({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "Look"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "high"},
            {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "auto"},
            {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}]}]}));
        let c = to_chat(&req, &[], "max_tokens").unwrap();
        let p = &c["messages"][0]["content"];
        assert_eq!(p[0], json!({"type": "text", "text": "Look"}));
        assert_eq!(
            p[1],
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "high"}})
        );
        assert_eq!(
            p[3],
            json!({"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"}})
        );
        let a = to_anthropic(&req, &[], 10).unwrap();
        let b = &a["messages"][0]["content"];
        assert_eq!(
            b[1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
        );
        assert_eq!(
            b[2]["source"],
            json!({"type": "url", "url": "https://x.test/a.png"})
        );
        assert_eq!(
            b[3],
            json!({"type": "document", "title": "a.pdf",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}})
        );
        // A file by URL: Anthropic takes it, Chat Completions cannot.
        let url = obj(json!({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "a"}, {"type": "input_file", "file_url": "https://x.test/a.pdf"}]}]}));
        assert_eq!(
            to_anthropic(&url, &[], 10).unwrap()["messages"][0]["content"][1]["source"]["type"],
            "url"
        );
        assert_eq!(
            to_chat(&url, &[], "max_tokens")
                .unwrap_err()
                .param
                .as_deref(),
            Some("input")
        );
    }

    #[test]
    fn images_from_tools_follow_the_tool_messages_for_chat() {
        let req = obj(json!({"model": "m", "input": [
            {"role": "user", "content": "look at both"},
            {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "view_image", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": [
                {"type": "input_text", "text": "first"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
            {"type": "function_call_output", "call_id": "c2", "output": [
                {"type": "input_image", "image_url": "https://x.test/b.png"}]},
            {"role": "user", "content": "well?"}]}));
        let c = to_chat(&req, &[], "max_tokens").unwrap();
        let m = c["messages"].as_array().unwrap();
        let roles: Vec<&str> = m.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "assistant", "tool", "tool", "user", "user"]);
        assert_eq!(m[2]["content"], "first");
        assert_eq!(m[3]["content"], "");
        assert_eq!(
            m[4]["content"][0]["image_url"]["url"],
            "data:image/png;base64,AAAA"
        );
        assert_eq!(
            m[4]["content"][1]["image_url"]["url"],
            "https://x.test/b.png"
        );
        assert_eq!(m[5]["content"], "well?");
        // Anthropic takes them inside the tool results.
        let a = to_anthropic(&req, &[], 10).unwrap();
        assert_eq!(
            a["messages"][2]["content"][0]["content"][1]["type"],
            "image"
        );
    }

    #[test]
    fn tool_choice_maps_to_both_formats() {
        let tools = json!([{"type": "function", "name": "f"}, {"type": "custom", "name": "g"},
            {"type": "namespace", "name": "ns", "description": "d", "tools": [{"type": "function", "name": "h"}]}]);
        for (choice, chat, anthropic) in [
            (json!("auto"), json!("auto"), json!({"type": "auto"})),
            (json!("none"), json!("none"), json!({"type": "none"})),
            (json!("required"), json!("required"), json!({"type": "any"})),
            (
                json!({"type": "function", "name": "f"}),
                json!({"type": "function", "function": {"name": "f"}}),
                json!({"type": "tool", "name": "f"}),
            ),
            (
                json!({"type": "custom", "name": "g"}),
                json!({"type": "function", "function": {"name": "g"}}),
                json!({"type": "tool", "name": "g"}),
            ),
        ] {
            let req =
                obj(json!({"model": "m", "input": "x", "tools": tools, "tool_choice": choice}));
            let c = to_chat(&req, &[], "max_tokens").unwrap();
            assert_eq!(c["tool_choice"], chat, "{choice}");
            assert_eq!(c["tools"].as_array().unwrap().len(), 3);
            assert_eq!(c["tools"][2]["function"]["name"], "h");
            assert_eq!(
                to_anthropic(&req, &[], 10).unwrap()["tool_choice"],
                anthropic,
                "{choice}"
            );
        }
        let allowed = obj(json!({"model": "m", "input": "x", "tools": tools,
            "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "h"}]}}));
        let c = to_chat(&allowed, &[], "max_tokens").unwrap();
        assert_eq!(c["tools"].as_array().unwrap().len(), 1);
        assert_eq!(c["tool_choice"], "required");
        for bad_choice in [
            json!({"type": "web_search_preview"}),
            json!({"type": "function", "name": "nope"}),
            json!("sometimes"),
        ] {
            let req =
                obj(json!({"model": "m", "input": "x", "tools": tools, "tool_choice": bad_choice}));
            assert_eq!(
                to_chat(&req, &[], "max_tokens")
                    .unwrap_err()
                    .param
                    .as_deref(),
                Some("tool_choice")
            );
        }
        // Only hosted tools: nothing about tools reaches the upstream.
        let hosted = obj(
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}],
            "tool_choice": "auto", "parallel_tool_calls": true}),
        );
        let c = to_chat(&hosted, &[], "max_tokens").unwrap();
        assert!(
            c.get("tools").is_none()
                && c.get("tool_choice").is_none()
                && c.get("parallel_tool_calls").is_none()
        );
        let mut forced = hosted.clone();
        forced.insert("tool_choice".into(), json!("required"));
        assert_eq!(
            to_chat(&forced, &[], "max_tokens")
                .unwrap_err()
                .param
                .as_deref(),
            Some("tool_choice")
        );
    }

    #[test]
    fn text_formats_map_to_response_format_or_are_rejected() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        for (format, want) in [
            (json!({"type": "text"}), Value::Null),
            (
                json!({"type": "json_object"}),
                json!({"type": "json_object"}),
            ),
            (
                json!({"type": "json_schema", "name": "out", "schema": schema, "strict": true}),
                json!({"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": true}}),
            ),
        ] {
            let req = obj(
                json!({"model": "m", "input": "x", "text": {"format": format, "verbosity": "high"}}),
            );
            let c = to_chat(&req, &[], "max_tokens").unwrap();
            assert_eq!(
                c.get("response_format").cloned().unwrap_or(Value::Null),
                want
            );
            let a = to_anthropic(&req, &[], 10);
            if want.is_null() {
                assert!(a.is_ok());
            } else {
                assert_eq!(a.unwrap_err().param.as_deref(), Some("text"));
            }
        }
    }

    #[test]
    fn unsupported_parameters_are_rejected_and_bookkeeping_dropped() {
        let base = json!({"model": "m", "input": "x"});
        for (k, v) in [
            ("background", json!(true)),
            ("conversation", json!("conv_1")),
            ("prompt", json!({"id": "pmpt_1"})),
            ("top_logprobs", json!(3)),
        ] {
            let mut r = obj(base.clone());
            r.insert(k.into(), v);
            assert_eq!(
                to_chat(&r, &[], "max_tokens").unwrap_err().param.as_deref(),
                Some(k)
            );
            assert_eq!(
                to_anthropic(&r, &[], 1).unwrap_err().param.as_deref(),
                Some(k)
            );
        }
        let mut hot = obj(base.clone());
        hot.insert("temperature".into(), json!(1.5));
        assert_eq!(
            to_chat(&hot, &[], "max_tokens").unwrap()["temperature"],
            1.5
        );
        assert_eq!(
            to_anthropic(&hot, &[], 1).unwrap_err().param.as_deref(),
            Some("temperature")
        );
        for item in [
            json!({"type": "item_reference", "id": "msg_1"}),
            json!({"type": "web_search_call", "id": "ws_1"}),
            json!({"type": "message", "role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}),
            json!({"type": "message", "role": "robot", "content": "x"}),
            json!("just a string"),
        ] {
            let r = obj(json!({"model": "m", "input": [item]}));
            assert_eq!(
                to_chat(&r, &[], "max_tokens").unwrap_err().param.as_deref(),
                Some("input"),
                "{item}"
            );
            assert_eq!(
                to_anthropic(&r, &[], 1).unwrap_err().param.as_deref(),
                Some("input")
            );
        }
        let mut quiet = obj(base);
        for (k, v) in [
            ("store", json!(true)),
            ("include", json!(["reasoning.encrypted_content"])),
            ("safety_identifier", json!("u")),
            ("max_tool_calls", json!(3)),
            ("background", json!(false)),
            ("user", json!("u1")),
            ("top_p", json!(0.5)),
        ] {
            quiet.insert(k.into(), v);
        }
        let c = to_chat(&quiet, &[], "max_tokens").unwrap();
        assert_eq!(c["user"], "u1");
        assert_eq!(c["top_p"], 0.5);
        assert!(c.get("safety_identifier").is_none() && c.get("max_tool_calls").is_none());
        assert_eq!(
            to_anthropic(&quiet, &[], 1).unwrap()["metadata"],
            json!({"user_id": "u1"})
        );
    }

    #[test]
    fn reasoning_items_reach_anthropic_only_when_they_came_from_it() {
        let req = obj(json!({"model": "m", "input": [
            {"role": "user", "content": "q"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAopenai"},
            {"type": "reasoning", "id": "rs_2", "summary": [{"type": "summary_text", "text": "plain"}]},
            {"type": "reasoning", "id": "rs_3", "summary": [], "encrypted_content": "ant-redacted:XYZ"},
            {"role": "assistant", "content": "a"}]}));
        let a = to_anthropic(&req, &[], 10).unwrap();
        assert_eq!(
            a["messages"][1]["content"],
            json!([{"type": "redacted_thinking", "data": "XYZ"},
            {"type": "text", "text": "a"}])
        );
        let c = to_chat(&req, &[], "max_tokens").unwrap();
        assert_eq!(
            c["messages"],
            json!([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
        );
    }

    #[test]
    fn instructions_as_messages_become_system() {
        let req = obj(json!({"model": "m", "input": "x",
            "instructions": [{"role": "developer", "content": [{"type": "input_text", "text": "Rule 1"}]},
                             {"role": "system", "content": "Rule 2"}]}));
        assert_eq!(
            to_chat(&req, &[], "max_tokens").unwrap()["messages"][0]["content"],
            "Rule 1\n\nRule 2"
        );
        assert_eq!(
            to_anthropic(&req, &[], 1).unwrap()["system"][1]["text"],
            "Rule 2"
        );
    }

    #[test]
    fn input_items_are_normalised_with_ids() {
        let s = input_items(&obj(json!({"input": "hello"}))).unwrap();
        assert_eq!(s.len(), 1);
        assert!(s[0]["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(
            s[0]["content"],
            json!([{"type": "input_text", "text": "hello"}])
        );
        assert_eq!(s[0]["role"], "user");
        assert_eq!(s[0]["type"], "message");
        let items = input_items(&obj(json!({"input": [
            {"role": "assistant", "content": "hi"},
            {"type": "function_call_output", "call_id": "c", "output": "x"},
            {"type": "custom_tool_call", "id": "ctc_keep", "call_id": "d", "name": "n", "input": "i"}]}))).unwrap();
        assert_eq!(
            items[0]["content"],
            json!([{"type": "output_text", "text": "hi", "annotations": []}])
        );
        assert_eq!(items[0]["status"], "completed");
        assert!(items[1]["id"].as_str().unwrap().starts_with("fco_"));
        assert_eq!(items[1]["status"], "completed");
        assert_eq!(items[2]["status"], "completed");
        assert_eq!(items[2]["id"], "ctc_keep");
        assert!(input_items(&obj(json!({"input": 5}))).is_err());
        assert!(input_items(&obj(json!({"input": [1]}))).is_err());
        // Normalised items translate exactly like the originals.
        let orig = obj(
            json!({"model": "m", "input": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
        );
        let norm = obj(json!({"model": "m", "input": input_items(&orig).unwrap()}));
        assert_eq!(
            to_chat(&orig, &[], "max_tokens").unwrap(),
            to_chat(&norm, &[], "max_tokens").unwrap()
        );
    }
}
