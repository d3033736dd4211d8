//! `/llms.txt` (the llmstxt.org index of the docs) and `/llms-full.txt` (every page, then
//! an API reference written from the OpenAPI document: per operation its method, path,
//! summary, auth, parameters, request fields and responses).

use serde_json::Value;

use super::pages::Rendered;

const SUMMARY: &str = "tokengate is a self-hosted LLM API gateway with a customer portal: one \
OpenAI- and Anthropic-compatible endpoint for every model its operator connects, API keys, \
per-request metering and billing to the nano-dollar, and a management API for keys, usage \
and top-ups.";

/// The llmstxt.org index: H1, blockquote summary, notes, sections of links.
pub fn llms_txt(base: &str, pages: &[Rendered]) -> String {
    let mut out = format!(
        "# tokengate\n\n> {SUMMARY}\n\n\
         Point any OpenAI SDK at `{base}/v1` and any Anthropic SDK at `{base}`, with an API key \
         (`sk-tg-…`) as the SDK's API key. Management (keys, balance, usage, top-ups) is the \
         REST API under `{base}/api/v1`, with an access token from the device flow. Agents: \
         read the agents guide first — agents hand top-up URLs to a person and never pay.\n\n\
         ## Docs\n\n"
    );
    for p in pages {
        out.push_str(&format!(
            "- [{}]({base}/docs/{}.md): {}\n",
            p.title, p.slug, p.summary
        ));
    }
    out.push_str(&format!(
        "\n## API\n\n\
         - [OpenAPI document]({base}/openapi.json): every endpoint of `/v1`, `/api/v1` and \
         `/api/v1/admin` with request and response schemas, errors, auth and examples \
         (OpenAPI 3.1)\n\
         \n## Optional\n\n\
         - [All docs in one file]({base}/llms-full.txt): every page above, then an API \
         reference generated from the OpenAPI document\n"
    ));
    out
}

/// Every page, then the API reference.
pub fn llms_full_txt(base: &str, pages: &[Rendered], doc: &Value) -> String {
    let mut out = format!(
        "# tokengate — full documentation\n\n> {SUMMARY}\n\n\
         Base URL of this server: {base}. Pages: {base}/llms.txt. OpenAPI: {base}/openapi.json.\n"
    );
    for p in pages {
        out.push_str(&format!(
            "\n\n---\n\n<!-- {base}/docs/{}.md -->\n\n",
            p.slug
        ));
        out.push_str(p.markdown.trim_end());
        out.push('\n');
    }
    out.push_str("\n\n---\n\n");
    out.push_str(&api_reference(base, doc));
    out
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The API reference of an OpenAPI document, as Markdown.
pub fn api_reference(base: &str, doc: &Value) -> String {
    let mut out = format!(
        "# API reference\n\nGenerated from {base}/openapi.json (OpenAPI {}). Paths are \
         relative to {base}.\n\n## Authentication\n\n",
        doc["openapi"].as_str().unwrap_or("3.1")
    );
    if let Some(schemes) = doc["components"]["securitySchemes"].as_object() {
        for (name, s) in schemes {
            out.push_str(&format!(
                "- `{name}`: {}\n",
                s["description"].as_str().unwrap_or("")
            ));
        }
    }
    let empty = serde_json::Map::new();
    let paths = doc["paths"].as_object().unwrap_or(&empty);
    let tags: Vec<(String, String)> = doc["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap_or("").to_string(),
                        t["description"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    for (tag, description) in &tags {
        let mut section = String::new();
        for (path, item) in paths {
            for method in METHODS {
                let op = &item[method];
                if !op.is_object() {
                    continue;
                }
                let in_tag = op["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|x| x.as_str() == Some(tag)));
                if in_tag {
                    section.push_str(&operation(doc, method, path, op));
                }
            }
        }
        if !section.is_empty() {
            out.push_str(&format!("\n## {tag}\n\n{description}\n{section}"));
        }
    }
    out.push_str(&schemas(doc));
    out
}

fn operation(doc: &Value, method: &str, path: &str, op: &Value) -> String {
    let mut out = format!(
        "\n### {} {path}\n\n{}\n",
        method.to_uppercase(),
        op["summary"].as_str().unwrap_or("")
    );
    if let Some(d) = op["description"].as_str() {
        out.push_str(&format!("\n{}\n", d.trim()));
    }
    out.push('\n');
    let auth: Vec<String> = op["security"]
        .as_array()
        .map(|reqs| {
            reqs.iter()
                .filter_map(|r| r.as_object())
                .flat_map(|r| r.keys().map(|k| format!("`{k}`")))
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&format!(
        "- Auth: {}\n",
        if auth.is_empty() {
            "none".to_string()
        } else {
            auth.join(" or ")
        }
    ));
    if let Some(params) = op["parameters"].as_array() {
        out.push_str("- Parameters:\n");
        for p in params {
            out.push_str(&format!(
                "  - `{}` ({}, {}{}){}\n",
                p["name"].as_str().unwrap_or(""),
                p["in"].as_str().unwrap_or(""),
                type_name(&p["schema"]),
                if p["required"].as_bool() == Some(true) {
                    ", required"
                } else {
                    ""
                },
                first_line(&p["description"])
            ));
        }
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        for (media, body) in content {
            out.push_str(&format!(
                "- Request body (`{media}`, {}):\n",
                type_name(&body["schema"])
            ));
            out.push_str(&fields(doc, &body["schema"], "  "));
        }
    }
    if let Some(responses) = op["responses"].as_object() {
        out.push_str("- Responses:\n");
        for (status, r) in responses {
            let bodies: Vec<String> = r["content"]
                .as_object()
                .map(|c| {
                    c.iter()
                        .map(|(media, b)| format!("`{media}` {}", shape(doc, &b["schema"])))
                        .collect()
                })
                .unwrap_or_default();
            out.push_str(&format!(
                "  - {status}: {}{}\n",
                first_paragraph(&r["description"]),
                if bodies.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", bodies.join("; "))
                }
            ));
        }
    }
    out
}

/// `#/components/schemas/X` → the schema X.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => r
            .strip_prefix("#/components/schemas/")
            .map(|name| &doc["components"]["schemas"][name])
            .unwrap_or(schema),
        None => schema,
    }
}

/// A short name of a schema's type: `string`, `integer | null`, `array of X`, `X`.
pub fn type_name(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = schema[key].as_array() {
            return alts.iter().map(type_name).collect::<Vec<_>>().join(" | ");
        }
    }
    let base = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_string(),
    };
    if base.starts_with("array") {
        return base.replacen(
            "array",
            &format!("array of {}", type_name(&schema["items"])),
            1,
        );
    }
    match schema["format"].as_str() {
        Some(f) if base.starts_with("string") => format!("{base} ({f})"),
        _ => base,
    }
}

/// The fields of an object schema, one per line, with type, required and description.
fn fields(doc: &Value, schema: &Value, indent: &str) -> String {
    let s = resolve(doc, schema);
    let Some(props) = s["properties"].as_object() else {
        return String::new();
    };
    let required: Vec<&str> = s["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = String::new();
    for (name, p) in props {
        out.push_str(&format!(
            "{indent}- `{name}` ({}{}){}\n",
            type_name(p),
            if required.contains(&name.as_str()) {
                ", required"
            } else {
                ""
            },
            first_line(description(doc, p))
        ));
    }
    out
}

/// A property's description: its own, one of its `oneOf` branches', or its type's.
fn description<'a>(doc: &'a Value, p: &'a Value) -> &'a Value {
    if p["description"].is_string() {
        return &p["description"];
    }
    let branches = p["oneOf"].as_array().map(Vec::as_slice).unwrap_or_default();
    if let Some(d) = branches.iter().find(|b| b["description"].is_string()) {
        return &d["description"];
    }
    let referenced = std::iter::once(p)
        .chain(branches)
        .find(|b| b["$ref"].is_string());
    match referenced {
        Some(r) => &resolve(doc, r)["description"],
        None => &p["description"],
    }
}

/// Every schema of the document with its fields.
fn schemas(doc: &Value) -> String {
    let mut out = String::from(
        "\n## Schemas\n\nThe request and response bodies named above, field by field.\n",
    );
    let empty = serde_json::Map::new();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap_or(&empty) {
        out.push_str(&format!("\n### {name}\n\n"));
        if let Some(d) = schema["description"].as_str() {
            out.push_str(&format!("{}\n\n", d.trim()));
        }
        let f = fields(doc, schema, "");
        if f.is_empty() {
            out.push_str(&format!("Type: {}.\n", type_name(schema)));
        } else {
            out.push_str(&f);
        }
    }
    out
}

/// A response body in a few words: its schema's name and its top-level fields.
fn shape(doc: &Value, schema: &Value) -> String {
    let name = type_name(schema);
    let s = if schema["type"].as_str() == Some("array") {
        resolve(doc, &schema["items"])
    } else {
        resolve(doc, schema)
    };
    match s["properties"].as_object() {
        Some(props) => format!(
            "{name} {{{}}}",
            props
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => name,
    }
}

fn first_line(v: &Value) -> String {
    v.as_str()
        .and_then(|s| s.lines().next())
        .map(|l| format!(": {l}"))
        .unwrap_or_default()
}

fn first_paragraph(v: &Value) -> String {
    v.as_str()
        .map(|s| s.split("\n\n").next().unwrap_or("").replace('\n', " "))
        .unwrap_or_default()
}
