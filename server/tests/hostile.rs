//! Hostile input over every documented route, on SQLite and PostgreSQL. The routes come from
//! the server's own OpenAPI document (`GET /openapi.json`), so a new route is covered without
//! touching this file. For every operation the suite sends, with valid credentials (so that
//! validation, not authentication, is what answers) and without: malformed JSON, wrong types,
//! megabyte strings, NULs and control characters, lone surrogates, 100k-deep nesting,
//! invalid UTF-8, duplicate keys, negative and overflowing numbers, wrong content types,
//! bodies over the limit, hostile path parameters and query strings, and hostile credentials.
//! Every answer must be below 500, arrive (no reset), and — when it is a 4xx — be in the
//! documented error shape of its route. Afterwards normal requests must still be metered and
//! charged (the usage writer is not stuck), the ledger must verify, and no column may hold a
//! megabyte string that a client sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Running, on_postgres, start_public_with};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::Row;
use tokengate_core::accounts::{self, EntryKind};
use tokengate_core::keys::{self, NewKey};
use tokengate_core::{DbKind, now_ms, password};

const USD: i64 = 1_000_000_000;
const PW: &str = "hostile suite password 1";
const WHSEC: &str = "whsec_hostile_suite";
/// The body limit the server runs with here (bytes).
const BODY_LIMIT: usize = 3_000_000;
/// A "huge" string: megabytes, but under the body limit, so validation has to refuse it.
const HUGE: usize = 2_000_000;
/// The longest text any column may hold after the suite.
const STORED_TEXT_CAP: i64 = 256 * 1024;
/// Stored Responses content (`/v1/responses` with `store`): the prompt and the answer of a
/// request that was admitted and billed for its tokens, kept for continuation until the
/// retention purge. Bounded by what a request may carry and an answer may bring back, not
/// by the free-text cap: the input by the body limit, the answer (which echoes the request's
/// parameters and holds the output) by twice that.
const STORED_RESPONSE_CAP: i64 = 2 * BODY_LIMIT as i64;
/// Requests in flight at once.
const PARALLEL: usize = 8;
/// Stands in for a raw JSON fragment while a mutated body is serialized.
const HOLE: &str = "\u{1}HOLE\u{1}";

/// Which documented error shape a route answers its 4xx in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// `{"error":{"message","type","param","code"}}`.
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`.
    Anthropic,
    /// `{"error":{"message","type","code"}}`.
    Api,
    /// RFC 6749 `{"error":"…","error_description":"…"}` (token and device-code endpoints).
    OAuth,
}

fn shape_of(path: &str) -> Shape {
    if path.starts_with("/v1/messages") {
        Shape::Anthropic
    } else if path.starts_with("/v1/") {
        Shape::OpenAi
    } else if path == "/api/v1/auth/token" || path == "/api/v1/auth/device/code" {
        Shape::OAuth
    } else {
        Shape::Api
    }
}

/// Whether `v` is the documented error body of `shape`; the reason when it is not.
fn shape_problem(shape: Shape, v: &Value) -> Option<&'static str> {
    let e = &v["error"];
    let s = |x: &Value| x.is_string() && !x.as_str().unwrap_or("").is_empty();
    let ok = match shape {
        Shape::OpenAi => {
            s(&e["message"])
                && s(&e["type"])
                && e.as_object().is_some_and(|o| o.contains_key("param"))
                && e.as_object().is_some_and(|o| o.contains_key("code"))
        }
        Shape::Anthropic => v["type"] == "error" && s(&e["type"]) && s(&e["message"]),
        Shape::Api => s(&e["message"]) && s(&e["type"]) && s(&e["code"]),
        Shape::OAuth => s(e),
    };
    (!ok).then_some(match shape {
        Shape::OpenAi => "not the OpenAI error shape",
        Shape::Anthropic => "not the Anthropic error shape",
        Shape::Api => "not the API error shape",
        Shape::OAuth => "not the OAuth error shape",
    })
}

/// Who a request claims to be.
#[derive(Debug, Clone)]
enum Who {
    /// No credentials (and no `Origin`).
    Anon,
    /// The credentials the route documents, for the customer (the admin on `/admin`
    /// routes, a throwaway account on sign-out routes, a valid signature on webhooks).
    Valid,
    /// The customer's access token on an admin route.
    CustomerOnAdmin,
    /// The portal session (the leaver's on sign-out routes) with a hostile `Origin`.
    SessionFrom(Vec<u8>),
    /// A hostile `(header, value)`.
    Header(&'static str, Vec<u8>),
}

/// What a case may answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// A 4xx (or a 303 on the sign-in forms, which answer every outcome by redirect).
    Reject,
    /// Anything below 500 (the input may be acceptable, e.g. an optional field or a valid
    /// duplicate); a 4xx still has to be in the documented shape.
    NoServerError,
}

#[derive(Debug, Clone)]
struct Case {
    label: String,
    method: Method,
    template: String,
    /// Path and query, already encoded.
    target: String,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
    who: Who,
    expect: Expect,
}

/// One documented operation.
#[derive(Debug, Clone)]
struct Op {
    method: Method,
    template: String,
    path_params: Vec<String>,
    query_params: Vec<String>,
    /// (content type, base body as JSON, the body's schema).
    body: Option<(String, Value, Value)>,
    /// A sample item of each array property of the body's schema.
    array_props: BTreeMap<String, Value>,
    secured: bool,
}

/// Everything the cases need at run time.
struct Ctx {
    r: Running,
    c: reqwest::Client,
    /// The customer's `/v1` key.
    key: String,
    customer_token: String,
    admin_token: String,
    /// The account the admin's user routes act on (credited, suspended, reactivated).
    victim_id: i64,
    /// The account the sign-out routes sign out.
    leaver_id: i64,
    customer_session: String,
    leaver_session: String,
    /// A second key of the customer's, the target of key routes (never the `/v1` key).
    spare_key_id: i64,
}

// ----- the OpenAPI document -> operations ---------------------------------------------------

fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match schema["$ref"].as_str() {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap();
                schema = &doc["components"]["schemas"][name];
            }
            None => break,
        }
    }
    schema
}

/// A small valid-looking value for `schema` (its example if it has one).
fn sample(doc: &Value, schema: &Value, depth: usize) -> Value {
    let schema = resolve(doc, schema);
    if depth > 6 {
        return Value::Null;
    }
    if let Some(e) = schema.get("example") {
        return e.clone();
    }
    if let Some(e) = schema["enum"].as_array().and_then(|a| a.first()) {
        return e.clone();
    }
    for alt in ["oneOf", "anyOf", "allOf"] {
        if let Some(alts) = schema[alt].as_array() {
            let pick = alts
                .iter()
                .find(|a| resolve(doc, a)["type"] != "null")
                .or(alts.first());
            if let Some(a) = pick {
                return sample(doc, a, depth + 1);
            }
        }
    }
    let ty = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_string(),
        _ if schema["properties"].is_object() => "object".into(),
        _ => "string".into(),
    };
    match ty.as_str() {
        "object" => {
            let mut out = serde_json::Map::new();
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for name in required {
                let prop = &schema["properties"][name];
                out.insert(name.into(), sample(doc, prop, depth + 1));
            }
            Value::Object(out)
        }
        "array" => json!([]),
        "integer" | "number" => json!(1),
        "boolean" => json!(false),
        "null" => Value::Null,
        _ => match schema["format"].as_str() {
            Some("date-time") => json!("2026-01-01T00:00:00Z"),
            Some("email") => json!("someone@example.com"),
            _ => json!("x"),
        },
    }
}

/// A sample item when `prop` is (possibly nullable, possibly one of several) an array.
fn array_item(doc: &Value, prop: &Value) -> Option<Value> {
    let prop = resolve(doc, prop);
    let is_array = match &prop["type"] {
        Value::String(t) => t == "array",
        Value::Array(ts) => ts.iter().any(|t| t == "array"),
        _ => false,
    };
    if is_array {
        return Some(sample(doc, &prop["items"], 1));
    }
    ["oneOf", "anyOf"]
        .iter()
        .filter_map(|k| prop[*k].as_array())
        .flatten()
        .find_map(|alt| array_item(doc, alt))
}

/// Better bases than the schema gives, where the document has no example.
fn base_override(template: &str) -> Option<Value> {
    match template {
        "/v1/messages" => Some(json!({"model": "mock/fast-1", "max_tokens": 16,
            "messages": [{"role": "user", "content": "hello"}]})),
        "/v1/embeddings" => Some(json!({"model": "mock/fast-1", "input": "hello"})),
        "/v1/chat/completions" => Some(json!({"model": "mock/fast-1", "max_tokens": 16,
            "messages": [{"role": "system", "content": "terse"},
                         {"role": "user", "content": "hello"}]})),
        "/auth/login" => Some(
            json!({"email": "nobody@example.com", "password": "wrong password",
            "next": "/console"}),
        ),
        "/auth/signup" => Some(json!({"email": "new@example.com", "password": PW,
            "display_name": "New"})),
        "/auth/device" => Some(json!({"user_code": "BCDF-GHJK", "action": "approve"})),
        "/api/v1/auth/device/code" => Some(json!({"client_id": "tokengate-cli",
            "scope": "account keys"})),
        "/api/v1/auth/token" => Some(json!({"client_id": "tokengate-cli",
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": "x"})),
        "/api/v1/me" => Some(json!({"display_name": "Edge"})),
        // What exists here (the examples name an `openai` provider this server lacks).
        "/api/v1/admin/models/{name}" => Some(json!({"provider": "mock",
            "upstream_model": "fast-1", "input_usd_per_m": "0.15", "output_usd_per_m": "0.60",
            "max_output_tokens": 1024, "complexity_tier": "fast"})),
        "/api/v1/admin/aliases/{name}" => Some(json!({"targets": [
            {"model": "mock/fast-1", "priority": 0, "weight": 1},
            {"model": "mock/smart-1", "priority": 1}]})),
        // Never the real OpenAI (the example's base URL): a closed local port.
        "/api/v1/admin/providers/{name}" => Some(json!({"kind": "openai",
            "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-hostile"})),
        _ => None,
    }
}

fn operations(doc: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            let method = match m.as_str() {
                "get" => Method::GET,
                "post" => Method::POST,
                "put" => Method::PUT,
                "patch" => Method::PATCH,
                "delete" => Method::DELETE,
                _ => continue,
            };
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let named = |loc: &str| -> Vec<String> {
                params
                    .iter()
                    .filter(|p| p["in"] == loc)
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect()
            };
            let body = op["requestBody"]["content"]
                .as_object()
                .and_then(|c| c.iter().next())
                .map(|(ct, media)| {
                    let schema = resolve(doc, &media["schema"]).clone();
                    let base = base_override(template)
                        .or_else(|| media.get("example").cloned())
                        .unwrap_or_else(|| sample(doc, &schema, 0));
                    (ct.clone(), base, schema)
                });
            let mut array_props = BTreeMap::new();
            if let Some((_, _, schema)) = &body {
                for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
                    if let Some(item) = array_item(doc, prop) {
                        array_props.insert(name.clone(), item);
                    }
                }
            }
            let secured = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|x| x.as_object().is_some_and(|o| !o.is_empty()))
            });
            ops.push(Op {
                method,
                template: template.clone(),
                path_params: named("path"),
                query_params: named("query"),
                body,
                array_props,
                secured,
            });
        }
    }
    ops
}

// ----- hostile material --------------------------------------------------------------------

/// Raw JSON values put in place of one field.
fn hostile_values(with_huge: bool) -> Vec<(&'static str, String, Expect)> {
    use Expect::*;
    let mut v = vec![
        ("null", "null".to_string(), NoServerError),
        ("object", r#"{"a":[1,{"b":null}]}"#.into(), NoServerError),
        ("array", r#"["x",1]"#.into(), NoServerError),
        ("bool", "true".into(), NoServerError),
        ("-1", "-1".into(), NoServerError),
        ("0", "0".into(), NoServerError),
        ("1.5", "1.5".into(), NoServerError),
        ("i64::MAX+1", "9223372036854775808".into(), NoServerError),
        ("i64::MIN-1", "-9223372036854775809".into(), NoServerError),
        ("u64::MAX+1", "18446744073709551616".into(), NoServerError),
        ("1e400", "1e400".into(), Reject),
        ("-1e400", "-1e400".into(), Reject),
        ("string -1", r#""-1""#.into(), NoServerError),
        ("empty string", r#""""#.into(), NoServerError),
        ("NUL", r#""a\u0000b""#.into(), NoServerError),
        (
            "control chars",
            r#""\u0001\u0008\u001b[2J\u007f\r\n\u202e\ufeff\uffff""#.into(),
            NoServerError,
        ),
        ("lone surrogate", r#""a\ud800b""#.into(), Reject),
        ("raw control byte", "\"a\u{1}b\"".into(), Reject),
    ];
    if with_huge {
        v.push((
            "huge string",
            format!("\"{}\"", "a".repeat(HUGE)),
            NoServerError,
        ));
        v.push((
            "huge NUL string",
            format!("\"{}\"", "\\u0000".repeat(HUGE / 6)),
            NoServerError,
        ));
    }
    v
}

/// Every value inside `v` as a JSON pointer: the leaves (empty objects and arrays count as
/// leaves) and the containers on the way to them.
fn leaves(v: &Value, at: String, out: &mut Vec<String>) {
    if !at.is_empty()
        && (v.as_object().is_some_and(|m| !m.is_empty())
            || v.as_array().is_some_and(|a| !a.is_empty()))
    {
        out.push(at.clone());
    }
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                leaves(
                    x,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                leaves(x, format!("{at}/{i}"), out);
            }
        }
        _ => out.push(at),
    }
}

/// `base` with the value at `pointer` replaced by the raw bytes `raw` (JSON or not).
fn with_raw(base: &Value, pointer: &str, raw: &[u8]) -> Vec<u8> {
    let mut v = base.clone();
    if let Some(slot) = v.pointer_mut(pointer) {
        *slot = json!(HOLE);
    } else if let Some((parent, last)) = pointer.rsplit_once('/')
        && let Some(Value::Object(m)) = v.pointer_mut(parent)
    {
        m.insert(last.replace("~1", "/").replace("~0", "~"), json!(HOLE));
    }
    let text = serde_json::to_string(&v).unwrap();
    let hole = serde_json::to_string(HOLE).unwrap();
    match text.split_once(&hole) {
        Some((a, b)) => [a.as_bytes(), raw, b.as_bytes()].concat(),
        None => text.into_bytes(),
    }
}

/// The base body's fields with a value each, as a form would carry them.
fn form_pairs(base: &Value) -> Vec<(String, String)> {
    base.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let s = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), s)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn encode_form(pairs: &[(String, String)]) -> String {
    let mut s = url_form(pairs);
    if s.is_empty() {
        s.push('=');
    }
    s
}

fn url_form(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The field hostile whole-body cases aim at: the base's first string leaf (a field the
/// handler reads, not an unknown one it would skip), else its first leaf or property.
fn target_field(base: &Value, schema: &Value) -> String {
    let mut all = Vec::new();
    leaves(base, String::new(), &mut all);
    all.iter()
        .find(|p| base.pointer(p).is_some_and(Value::is_string))
        .or_else(|| all.iter().find(|p| !p.is_empty()))
        .cloned()
        .or_else(|| {
            schema["properties"]
                .as_object()
                .and_then(|m| m.keys().next())
                .map(|k| format!("/{k}"))
        })
        .unwrap_or_else(|| "/model".into())
}

/// Whole bodies that are not acceptable JSON (all must be refused).
fn broken_json(base: &Value, field: &str) -> Vec<(&'static str, Vec<u8>)> {
    let good = serde_json::to_string(base).unwrap();
    let half = good[..good.len() / 2].to_string();
    let mut utf8_in_key = b"{\"\x80\xbf\":1".to_vec();
    if good.len() > 2 {
        utf8_in_key.push(b',');
    }
    utf8_in_key.extend_from_slice(&good.as_bytes()[1..]);
    let mut bom = vec![0xef, 0xbb, 0xbf];
    bom.extend_from_slice(good.as_bytes());
    let deep_arrays = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    vec![
        ("empty body", Vec::new()),
        ("open brace", b"{".to_vec()),
        ("truncated", half.into_bytes()),
        ("trailing garbage", format!("{good} x").into_bytes()),
        ("two documents", format!("{good}{good}").into_bytes()),
        ("single quotes", b"{'model': 'x'}".to_vec()),
        (
            "trailing comma",
            format!("{},}}", &good[..good.len() - 1]).into_bytes(),
        ),
        ("NaN", with_raw(base, field, b"NaN")),
        ("comment", b"{/* c */}".to_vec()),
        (
            "invalid UTF-8 in a string",
            with_raw(base, field, b"\"a\xff\xfe\xc0\x80\xed\xa0\x80b\""),
        ),
        ("invalid UTF-8 in a key", utf8_in_key),
        ("byte order mark", bom),
        ("raw NUL byte", with_raw(base, field, b"\"a\0b\"")),
        (
            "raw newline in a string",
            with_raw(base, field, b"\"a\nb\""),
        ),
        ("100k nested arrays", deep_arrays.clone().into_bytes()),
        (
            "100k nested arrays in a field",
            with_raw(base, field, deep_arrays.as_bytes()),
        ),
        (
            "100k nested objects in a field",
            with_raw(base, field, deep_objects.as_bytes()),
        ),
        ("100k unclosed arrays", "[".repeat(100_000).into_bytes()),
        ("1e400 at the top", b"1e400".to_vec()),
    ]
}

/// Bodies that are JSON but not an object of the right kind (any 4xx or 2xx).
fn odd_json(base: &Value) -> Vec<(&'static str, Vec<u8>)> {
    let good = serde_json::to_string(base).unwrap();
    let mut out = vec![
        ("null", b"null".to_vec()),
        ("array", b"[]".to_vec()),
        ("number", b"123".to_vec()),
        ("string", b"\"x\"".to_vec()),
        ("empty object", b"{}".to_vec()),
        (
            "whitespace around",
            format!(" \n\t{good}\r\n ").into_bytes(),
        ),
    ];
    // Duplicate keys: first a hostile value then the valid one, and the other way round.
    if let Some(m) = base.as_object() {
        for (k, v) in m.iter().take(6) {
            let rest = serde_json::to_string(base).unwrap();
            let rest = rest.strip_prefix('{').unwrap_or(&rest);
            let key = serde_json::to_string(k).unwrap();
            let bad = format!("{{{key}:{{\"x\":[1e3]}},{rest}");
            out.push(("duplicate key (bad first)", bad.into_bytes()));
            let rest2 = serde_json::to_string(base).unwrap();
            let body = rest2.strip_suffix('}').unwrap_or(&rest2);
            let sep = if body.len() > 1 { "," } else { "" };
            let bad_last = format!("{body}{sep}{key}:[null,{{}}]}}");
            out.push(("duplicate key (bad last)", bad_last.into_bytes()));
            let same = format!("{body}{sep}{key}:{}}}", v);
            out.push(("duplicate key (same value)", same.into_bytes()));
        }
    }
    out
}

const PATH_VALUES: &[(&str, &str)] = &[
    ("-1", "-1"),
    ("0", "0"),
    ("20 digits", "99999999999999999999"),
    ("i64::MAX+1", "9223372036854775808"),
    ("i64::MIN", "-9223372036854775808"),
    ("%00", "%00"),
    ("a%00b", "a%00b"),
    ("%FF", "%FF"),
    ("overlong UTF-8", "%C0%80"),
    ("control chars", "%01%1B%7F"),
    ("encoded slash", "..%2F..%2Fetc%2Fpasswd"),
    ("space", "%20"),
    ("1.5", "1.5"),
    ("1e3", "1e3"),
    ("unicode", "%E2%80%AE%F0%9F%92%A9"),
    ("quote", "%22%27%3Cscript%3E"),
];

const QUERY_VALUES: &[(&str, &str)] = &[
    ("-1", "-1"),
    ("20 digits", "99999999999999999999"),
    ("i64::MAX+1", "9223372036854775808"),
    ("i64::MIN-1", "-9223372036854775809"),
    ("1e400", "1e400"),
    ("empty", ""),
    ("%00", "%00"),
    ("%FF", "%FF"),
    ("bad escape", "%zz%"),
    ("CRLF", "%0D%0ASet-Cookie:%20x=y"),
    ("text", "abc"),
    ("date-ish", "2026-13-45T99:99:99Z"),
    ("control chars", "%01%1B%7F"),
];

/// Hostile credentials (header, value).
fn hostile_headers() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>)> = vec![
        ("authorization", b"Bearer".to_vec()),
        ("authorization", b"Bearer ".to_vec()),
        ("authorization", b"Basic Zm9vOmJhcg==".to_vec()),
        ("authorization", b"Bearer a.b.c".to_vec()),
        (
            "authorization",
            format!("Bearer {}", "A".repeat(16 * 1024)).into_bytes(),
        ),
        (
            "authorization",
            b"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.".to_vec(),
        ),
        ("authorization", b"Bearer tg-\xff\xfe\x80".to_vec()),
        ("authorization", b"Bearer  x  y".to_vec()),
        ("x-api-key", b"\xff\xfe".to_vec()),
        ("x-api-key", b"sk-ant-api03-nothing".to_vec()),
        ("cookie", b"tg_session=%00%FF".to_vec()),
        (
            "cookie",
            format!("tg_session={}", "a".repeat(4000)).into_bytes(),
        ),
        ("cookie", b"tg_session=\xff\xfe".to_vec()),
    ];
    v.push(("authorization", b"Bearer -1".to_vec()));
    v
}

// ----- building the cases ------------------------------------------------------------------

/// Whether `/v1` must refuse `label` in `field` itself. The gateway checks the fields it acts
/// on — the model it routes, the messages, the output cap and choice count it holds money
/// for, streaming — and passes every other field to the upstream unchanged, which judges
/// it (its 4xx is relayed in the documented shape; the mock upstream here accepts anything).
fn strict_v1(template: &str, field: &str, label: &str) -> bool {
    const ACTED_ON: &[&str] = &[
        "/model",
        "/messages",
        "/max_tokens",
        "/max_completion_tokens",
        "/n",
        "/stream",
    ];
    const WRONG: &[&str] = &[
        "object",
        "array",
        "bool",
        "-1",
        "0",
        "1.5",
        "i64::MAX+1",
        "i64::MIN-1",
        "u64::MAX+1",
    ];
    template.starts_with("/v1/")
        && ACTED_ON.contains(&field)
        && WRONG.contains(&label)
        && !(field == "/stream" && label == "bool")
        && !(template == "/v1/embeddings" && field != "/model")
}

/// The route's path with each path parameter set (defaults, or `over` for one of them).
fn fill(ctx: &Ctx, op: &Op, over: Option<(&str, &str)>) -> String {
    let mut p = op.template.clone();
    for name in &op.path_params {
        let value = match over {
            Some((n, v)) if n == name => v.to_string(),
            _ => default_param(ctx, &op.template, name),
        };
        p = p.replace(&format!("{{{name}}}"), &value);
    }
    p
}

fn default_param(ctx: &Ctx, template: &str, name: &str) -> String {
    match name {
        "payment_provider" => "stripe".into(),
        "id" if template.starts_with("/api/v1/me/keys") => ctx.spare_key_id.to_string(),
        "id" if template.starts_with("/api/v1/admin/users") => ctx.victim_id.to_string(),
        "id" if template.starts_with("/auth/oidc") => "nope".into(),
        "id" => "1".into(),
        "request_id" => "req_hostile".into(),
        _ => "hostile-x".into(),
    }
}

fn is_form(op: &Op) -> bool {
    op.body
        .as_ref()
        .is_some_and(|(ct, _, _)| ct.starts_with("application/x-www-form-urlencoded"))
}

fn cases_for(ctx: &Ctx, op: &Op) -> Vec<Case> {
    let mut out = Vec::new();
    let path = fill(ctx, op, None);
    let mk = |label: String,
              target: String,
              ct: Option<&str>,
              body: Option<Vec<u8>>,
              who: Who,
              expect: Expect| Case {
        label,
        method: op.method.clone(),
        template: op.template.clone(),
        target,
        content_type: ct.map(str::to_string),
        body,
        who,
        expect,
    };
    // DELETE on the real target would remove what the other cases exercise; path and
    // credential cases still run.
    let real_target_ok = op.method != Method::DELETE;
    let base_body: Option<(String, Vec<u8>)> = op.body.as_ref().map(|(ct, base, _)| {
        if is_form(op) {
            (ct.clone(), encode_form(&form_pairs(base)).into_bytes())
        } else {
            (ct.clone(), serde_json::to_vec(base).unwrap())
        }
    });
    let with_body = op.method != Method::GET && op.method != Method::DELETE;
    let anon_expect = if op.secured {
        Expect::Reject
    } else {
        Expect::NoServerError
    };

    if real_target_ok {
        let (ct, b) = base_body
            .clone()
            .map(|(c, b)| (Some(c), Some(b)))
            .unwrap_or((None, None));
        out.push(mk(
            "base request".into(),
            path.clone(),
            ct.as_deref(),
            b.clone(),
            Who::Valid,
            Expect::NoServerError,
        ));
        out.push(mk(
            "base request, no credentials".into(),
            path.clone(),
            ct.as_deref(),
            b,
            Who::Anon,
            anon_expect,
        ));
    }

    // Bodies.
    if with_body && real_target_ok {
        match &op.body {
            Some((ct, base, schema)) if !is_form(op) => {
                let field = target_field(base, schema);
                for (label, body) in broken_json(base, &field) {
                    for who in [Who::Valid, Who::Anon] {
                        let expect = if matches!(who, Who::Anon) && !op.secured {
                            Expect::NoServerError
                        } else {
                            Expect::Reject
                        };
                        out.push(mk(
                            format!("body: {label}"),
                            path.clone(),
                            Some(ct),
                            Some(body.clone()),
                            who,
                            expect,
                        ));
                    }
                }
                for (label, body) in odd_json(base) {
                    for who in [Who::Valid, Who::Anon] {
                        let expect = if matches!(who, Who::Anon) {
                            anon_expect
                        } else {
                            Expect::NoServerError
                        };
                        out.push(mk(
                            format!("body: {label}"),
                            path.clone(),
                            Some(ct),
                            Some(body.clone()),
                            who,
                            expect,
                        ));
                    }
                }
                // One field at a time: every leaf of the base, and every top-level
                // property the schema names that the base leaves out (an array one also
                // as a one-element array, so that its items are attacked too).
                let mut paths = Vec::new();
                leaves(base, String::new(), &mut paths);
                let mut fields: Vec<(Value, String)> =
                    paths.into_iter().map(|p| (base.clone(), p)).collect();
                if let Some(props) = schema["properties"].as_object() {
                    for name in props.keys() {
                        let p = format!("/{}", name.replace('~', "~0").replace('/', "~1"));
                        if fields
                            .iter()
                            .any(|(_, f)| f == &p || f.starts_with(&format!("{p}/")))
                        {
                            continue;
                        }
                        fields.push((base.clone(), p.clone()));
                        if let Some(items) = op.array_props.get(name) {
                            let mut with_array = base.clone();
                            if let Some(m) = with_array.as_object_mut() {
                                m.insert(name.clone(), json!([items]));
                                fields.push((with_array, format!("{p}/0")));
                            }
                        }
                    }
                }
                fields.retain(|(_, f)| !f.is_empty());
                for (fbase, field) in &fields {
                    for (label, raw, expect) in hostile_values(true) {
                        // A PUT that names what it writes gets a name of its own for the
                        // huge values, so that no later case overwrites what it stored
                        // before the database is searched for megabytes.
                        let target = match op.path_params.first() {
                            Some(p) if op.method == Method::PUT && label.starts_with("huge") => {
                                let n = out.len();
                                fill(ctx, op, Some((p, &format!("huge-{n}"))))
                            }
                            _ => path.clone(),
                        };
                        let expect = if strict_v1(&op.template, field, label) {
                            Expect::Reject
                        } else {
                            expect
                        };
                        out.push(mk(
                            format!("field {field} = {label}"),
                            target,
                            Some(ct),
                            Some(with_raw(fbase, field, raw.as_bytes())),
                            Who::Valid,
                            expect,
                        ));
                    }
                    for (label, raw, expect) in hostile_values(false).into_iter().step_by(3) {
                        out.push(mk(
                            format!("field {field} = {label}, no credentials"),
                            path.clone(),
                            Some(ct),
                            Some(with_raw(fbase, field, raw.as_bytes())),
                            Who::Anon,
                            if expect == Expect::Reject {
                                Expect::Reject
                            } else {
                                anon_expect
                            },
                        ));
                    }
                }
                // Wrong content types with a good body.
                let good = serde_json::to_vec(base).unwrap();
                for wrong in [
                    None,
                    Some("text/plain"),
                    Some("application/x-www-form-urlencoded"),
                    Some("multipart/form-data; boundary=x"),
                    Some("application/jsonx"),
                    Some("application/json; charset=utf-16"),
                    Some("\u{7f}"),
                ] {
                    out.push(mk(
                        format!("content type {wrong:?}"),
                        path.clone(),
                        wrong,
                        Some(good.clone()),
                        Who::Valid,
                        Expect::NoServerError,
                    ));
                }
                // Over the body limit.
                let mut big = br#"{"model":""#.to_vec();
                big.resize(BODY_LIMIT + 500_000, b'a');
                big.extend_from_slice(b"\"}");
                out.push(mk(
                    "body over the limit".into(),
                    path.clone(),
                    Some(ct),
                    Some(big),
                    Who::Valid,
                    Expect::Reject,
                ));
            }
            Some((ct, base, schema)) => {
                // A form.
                let pairs = form_pairs(base);
                let mut names: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
                if let Some(props) = schema["properties"].as_object() {
                    for n in props.keys() {
                        if !names.contains(n) {
                            names.push(n.clone());
                        }
                    }
                }
                let raw_values: Vec<(&str, String)> = vec![
                    ("%00", "a%00b".into()),
                    ("invalid UTF-8", "%FF%FE%C0%80".into()),
                    ("bad escape", "%zz%".into()),
                    ("control chars", "%01%1B%7F%0D%0A".into()),
                    ("empty", String::new()),
                    ("huge", "a".repeat(HUGE)),
                    ("-1", "-1".into()),
                    ("20 digits", "99999999999999999999".into()),
                    ("unicode", "%E2%80%AE%F0%9F%92%A9".into()),
                    // Address-shaped, so that a check for '@' does not catch them first.
                    ("NUL address", "a%00b%40example.com".into()),
                    ("control chars address", "%01%1B%5B2J%40example.com".into()),
                ];
                for name in &names {
                    for (label, raw) in &raw_values {
                        // An address of its own per case, so that a sign-up is not refused
                        // as taken before the hostile field is looked at.
                        let n = out.len();
                        let mut parts: Vec<String> = pairs
                            .iter()
                            .filter(|(k, _)| k != name)
                            .map(|(k, v)| match v.split_once('@') {
                                Some((user, host)) => {
                                    format!("{}={}", pct(k), pct(&format!("{user}-{n}@{host}")))
                                }
                                None => format!("{}={}", pct(k), pct(v)),
                            })
                            .collect();
                        parts.push(format!("{}={raw}", pct(name)));
                        out.push(mk(
                            format!("form {name} = {label}"),
                            path.clone(),
                            Some(ct),
                            Some(parts.join("&").into_bytes()),
                            Who::Valid,
                            Expect::NoServerError,
                        ));
                    }
                    let dup = format!("{}&{}=x", url_form(&pairs), pct(name));
                    out.push(mk(
                        format!("form {name} twice"),
                        path.clone(),
                        Some(ct),
                        Some(dup.into_bytes()),
                        Who::Valid,
                        Expect::NoServerError,
                    ));
                    let missing: Vec<(String, String)> =
                        pairs.iter().filter(|(k, _)| k != name).cloned().collect();
                    out.push(mk(
                        format!("form without {name}"),
                        path.clone(),
                        Some(ct),
                        Some(encode_form(&missing).into_bytes()),
                        Who::Valid,
                        Expect::NoServerError,
                    ));
                }
                let good = url_form(&pairs).into_bytes();
                let whole: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
                    ("empty form", Some(ct), Vec::new()),
                    ("separators only", Some(ct), b"&&==&=&".to_vec()),
                    (
                        "raw invalid UTF-8",
                        Some(ct),
                        b"\xff\xfe=\xff&a=\xc0\x80".to_vec(),
                    ),
                    ("raw NUL", Some(ct), b"a\0=b\0".to_vec()),
                    (
                        "JSON as JSON",
                        Some("application/json"),
                        serde_json::to_vec(base).unwrap(),
                    ),
                    ("no content type", None, good.clone()),
                    ("text/plain", Some("text/plain"), good.clone()),
                    ("nested brackets", Some(ct), b"a[b][c][d]=1&e[]=2".to_vec()),
                    ("a=b=c", Some(ct), b"a=b=c&=&x".to_vec()),
                ];
                for (label, wct, body) in whole {
                    for who in [Who::Valid, Who::Anon] {
                        out.push(mk(
                            format!("form: {label}"),
                            path.clone(),
                            wct,
                            Some(body.clone()),
                            who,
                            Expect::NoServerError,
                        ));
                    }
                }
                let mut big = b"a=".to_vec();
                big.resize(BODY_LIMIT + 500_000, b'a');
                out.push(mk(
                    "form over the limit".into(),
                    path.clone(),
                    Some(ct),
                    Some(big),
                    Who::Valid,
                    Expect::Reject,
                ));
            }
            None => {
                // No documented body: a few hostile ones must be ignored or refused.
                let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
                for (label, ct, body) in [
                    (
                        "garbage JSON",
                        Some("application/json"),
                        b"{\x00\xff".to_vec(),
                    ),
                    (
                        "100k nested arrays",
                        Some("application/json"),
                        deep.into_bytes(),
                    ),
                    ("NUL bytes", Some("text/plain"), vec![0u8; 1024]),
                ] {
                    out.push(mk(
                        format!("unexpected body: {label}"),
                        path.clone(),
                        ct,
                        Some(body),
                        Who::Valid,
                        Expect::NoServerError,
                    ));
                }
            }
        }
    }

    // Path parameters, one at a time, with the base body.
    for name in &op.path_params {
        let long = "a".repeat(5000);
        let values: Vec<(&str, &str)> = PATH_VALUES
            .iter()
            .copied()
            .chain(std::iter::once(("5000 chars", long.as_str())))
            .collect();
        for (label, value) in values {
            let target = fill(ctx, op, Some((name, value)));
            let (ct, b) = base_body
                .clone()
                .map(|(c, b)| (Some(c), Some(b)))
                .unwrap_or((None, None));
            // An id names nothing that exists; a name may be created by a PUT (and then
            // read, tested or deleted by the other cases).
            let id_like = name == "id" || name.ends_with("_id");
            let expect = if id_like && op.secured {
                Expect::Reject
            } else {
                Expect::NoServerError
            };
            out.push(mk(
                format!("path {{{name}}} = {label}"),
                target.clone(),
                ct.as_deref(),
                b.clone(),
                Who::Valid,
                expect,
            ));
            out.push(mk(
                format!("path {{{name}}} = {label}, no credentials"),
                target,
                ct.as_deref(),
                b,
                Who::Anon,
                anon_expect,
            ));
        }
    }

    // Query strings.
    let (ct, b) = base_body
        .clone()
        .map(|(c, b)| (Some(c), Some(b)))
        .unwrap_or((None, None));
    if real_target_ok {
        for name in &op.query_params {
            let long = "9".repeat(10_000);
            for (label, value) in QUERY_VALUES
                .iter()
                .copied()
                .chain(std::iter::once(("10k chars", long.as_str())))
            {
                out.push(mk(
                    format!("query {name} = {label}"),
                    format!("{path}?{name}={value}"),
                    ct.as_deref(),
                    b.clone(),
                    Who::Valid,
                    Expect::NoServerError,
                ));
            }
            out.push(mk(
                format!("query {name} twice"),
                format!("{path}?{name}=1&{name}=2"),
                ct.as_deref(),
                b.clone(),
                Who::Valid,
                Expect::NoServerError,
            ));
            out.push(mk(
                format!("query {name}[]"),
                format!("{path}?{name}[]=1&{name}[x]=2"),
                ct.as_deref(),
                b.clone(),
                Who::Valid,
                Expect::NoServerError,
            ));
        }
        for (label, q) in [
            ("unknown hostile parameters", "%00=%FF&a[b]=c&&=&%zz"),
            ("32 KiB query", &format!("q={}", "x".repeat(32 * 1024))),
        ] {
            out.push(mk(
                format!("query: {label}"),
                format!("{path}?{q}"),
                ct.as_deref(),
                b.clone(),
                Who::Valid,
                Expect::NoServerError,
            ));
        }
    }

    // Credentials.
    if op.secured && real_target_ok {
        for (h, v) in hostile_headers() {
            out.push(mk(
                format!(
                    "credentials {h}: {}",
                    String::from_utf8_lossy(&v)
                        .chars()
                        .take(40)
                        .collect::<String>()
                ),
                path.clone(),
                ct.as_deref(),
                b.clone(),
                Who::Header(h, v),
                Expect::Reject,
            ));
        }
        if op.template.starts_with("/api/v1/admin") {
            out.push(mk(
                "a customer's token on an admin route".into(),
                path.clone(),
                ct.as_deref(),
                b.clone(),
                Who::CustomerOnAdmin,
                Expect::Reject,
            ));
        }
        // A session cookie on a state-changing call needs this site's Origin.
        if op.method != Method::GET && op.template.starts_with("/api/v1/") {
            let base = ctx.r.base.clone();
            let origins: Vec<Vec<u8>> = vec![
                b"null".to_vec(),
                b"http://evil.example".to_vec(),
                format!("{base}.evil.example").into_bytes(),
                format!("http://evil.example@{}", base.trim_start_matches("http://")).into_bytes(),
                base.replace("127.0.0.1", "localhost").into_bytes(),
                Vec::new(),
                b"http://\xff\xfe".to_vec(),
                format!("{base} {base}").into_bytes(),
            ];
            for origin in origins {
                out.push(mk(
                    format!("session with Origin {}", String::from_utf8_lossy(&origin)),
                    path.clone(),
                    ct.as_deref(),
                    b.clone(),
                    Who::SessionFrom(origin),
                    Expect::Reject,
                ));
            }
        }
    }
    out
}

// ----- sending and judging -----------------------------------------------------------------

fn stripe_signature(body: &[u8]) -> String {
    let t = now_ms() / 1000;
    let mut mac = Hmac::<Sha256>::new_from_slice(WHSEC.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A fresh token of the leaver (signing out everywhere voids the previous ones).
async fn leaver_token(ctx: &Ctx) -> String {
    token(&ctx.r, ctx.leaver_id, "account keys billing").await
}

async fn token(r: &Running, user_id: i64, scope: &str) -> String {
    r.token(user_id, scope).await
}

/// Sends `case`; `None` when the answer is acceptable, else what is wrong with it.
async fn run(ctx: &Ctx, case: &Case) -> (Option<u16>, Option<String>) {
    let url = format!("{}{}", ctx.r.base, case.target);
    let mut req = ctx.c.request(case.method.clone(), &url).header(
        "x-forwarded-for",
        format!(
            "10.{}.{}.{}",
            rand::random::<u8>(),
            rand::random::<u8>(),
            rand::random::<u8>()
        ),
    );
    if let Some(ct) = &case.content_type {
        match HeaderValue::from_bytes(ct.as_bytes()) {
            Ok(v) => req = req.header("content-type", v),
            Err(_) => req = req.header("content-type", HeaderValue::from_static("bogus")),
        }
    }
    let t = &case.template;
    let auth_form = t.starts_with("/auth/");
    match &case.who {
        Who::Anon => {}
        Who::Valid => {
            if t.starts_with("/v1/") {
                req = req.bearer_auth(&ctx.key);
            } else if t.starts_with("/webhooks/") {
                let sig = stripe_signature(case.body.as_deref().unwrap_or_default());
                req = req.header("stripe-signature", sig);
            } else if t.contains("logout") {
                if auth_form {
                    req = req.header("cookie", format!("tg_session={}", ctx.leaver_session));
                } else {
                    req = req.bearer_auth(leaver_token(ctx).await);
                }
            } else if t.starts_with("/api/v1/admin") {
                req = req.bearer_auth(&ctx.admin_token);
            } else if auth_form {
                req = req.header("cookie", format!("tg_session={}", ctx.customer_session));
            } else if t.starts_with("/api/v1/") {
                req = req.bearer_auth(&ctx.customer_token);
            }
            if auth_form {
                req = req.header("origin", &ctx.r.base);
            }
        }
        Who::CustomerOnAdmin => req = req.bearer_auth(&ctx.customer_token),
        Who::SessionFrom(origin) => {
            let session = if t.contains("logout") {
                &ctx.leaver_session
            } else {
                &ctx.customer_session
            };
            req = req
                .header("cookie", format!("tg_session={session}"))
                .header("origin", HeaderValue::from_bytes(origin).unwrap());
        }
        Who::Header(name, value) => {
            let v = HeaderValue::from_bytes(value).unwrap();
            req = req.header(HeaderName::from_static(name), v);
            if auth_form {
                req = req.header("origin", &ctx.r.base);
            }
        }
    }
    if let Some(b) = &case.body {
        req = req.body(b.clone());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (None, Some(format!("no answer: {e}"))),
    };
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string());
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return (Some(status), Some(format!("{status}, body cut off: {e}"))),
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let snippet = || String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).to_string();
    // Without a Stripe to talk to, a valid top-up ends in the documented 503.
    let no_stripe = status == 503
        && t == "/api/v1/topup"
        && v["error"]["code"] == "payments_unavailable"
        && shape_problem(Shape::Api, &v).is_none();
    let problem = if no_stripe {
        None
    } else if status >= 500 {
        Some(format!("{status} {}", snippet()))
    } else if (300..400).contains(&status) {
        // The sign-in forms answer every outcome by redirect, on this site.
        let on_site = location
            .as_deref()
            .is_some_and(|l| l.starts_with('/') && !l.starts_with("//") && !l.contains('\\'));
        // `error=unavailable` is how they report a server-side failure: a 500 in disguise.
        let failed = location
            .as_deref()
            .is_some_and(|l| l.contains("error=unavailable"));
        (!(auth_form && status == 303 && on_site) || failed)
            .then(|| format!("{status} to {location:?}"))
    } else if (400..500).contains(&status) {
        shape_problem(shape_of(t), &v).map(|why| format!("{status} {why}: {}", snippet()))
    } else if case.expect == Expect::Reject {
        Some(format!("{status} accepted: {}", snippet()))
    } else {
        None
    };
    (Some(status), problem)
}

/// Answers whose failure is known and not fixed yet: (route, case label) with the reason.
/// Each is still sent; it is reported, not failed.
const KNOWN: &[(&str, &str, &str)] = &[];

fn known(case: &Case) -> Option<&'static str> {
    KNOWN
        .iter()
        .find(|(route, label, _)| *route == case.template && case.label.starts_with(label))
        .map(|(_, _, why)| *why)
}

// ----- the suite ---------------------------------------------------------------------------

async fn user(r: &Running, email: &str, role: &str, nanos: i64) -> i64 {
    let db = &r.server_state.db;
    let hash = password::hash(PW).unwrap();
    let u = accounts::create_user(db, email, "Hostile", Some(&hash), role.parse().unwrap())
        .await
        .unwrap();
    if nanos > 0 {
        accounts::apply_entry(
            db,
            accounts::Entry {
                user_id: u.id,
                kind: EntryKind::Promo,
                amount_nano: nanos,
                reference: None,
                note: Some("test"),
                created_by: None,
                refuse_negative: false,
            },
        )
        .await
        .unwrap();
    }
    u.id
}

async fn sign_in(r: &Running, c: &reqwest::Client, email: &str) -> String {
    let resp = c
        .post(format!("{}/auth/login", r.base))
        .header("origin", &r.base)
        .form(&[("email", email), ("password", PW), ("next", "/console")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "sign-in of {email}");
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("tg_session="))
        .map(|r| r.split(';').next().unwrap_or("").to_string())
        .filter(|v| !v.is_empty())
        .expect("a session cookie")
}

async fn setup(database_url: Option<String>) -> Ctx {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stripe_base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let limit = BODY_LIMIT.to_string();
    // The client's address comes from `X-Forwarded-For` (a new one per case), so that the
    // per-address throttles of sign-in, sign-up and the device flow do not answer in place
    // of validation.
    let r = start_public_with(
        database_url,
        &[
            ("TOKENGATE_MAX_BODY_BYTES", &limit),
            ("TOKENGATE_STRIPE_SECRET_KEY", "sk_test_hostile"),
            ("TOKENGATE_STRIPE_WEBHOOK_SECRET", WHSEC),
            ("TOKENGATE_STRIPE_API_BASE", &stripe_base),
        ],
        |c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()],
    )
    .await;
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        // Connections are reused: an answer must leave its connection fit for the next
        // request (the body read or drained), or that request fails.
        .build()
        .unwrap();
    let (customer_id, key) = r
        .customer(
            "hostile@example.com",
            1000 * USD,
            NewKey {
                name: "main".into(),
                ..NewKey::default()
            },
        )
        .await;
    let db = &r.server_state.db;
    let hash = password::hash(PW).unwrap();
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(&hash)
        .bind(customer_id)
        .execute(db.pool())
        .await
        .unwrap();
    let secret = r.server_state.config.secret_bytes();
    let (spare, _) = keys::create(
        db,
        &secret,
        customer_id,
        &NewKey {
            name: "spare".into(),
            ..NewKey::default()
        },
    )
    .await
    .unwrap();
    let admin_id = user(&r, "ops@example.com", "admin", 0).await;
    let victim_id = user(&r, "victim@example.com", "user", 10 * USD).await;
    r.server_state.gateway.refresh().await.unwrap();
    let customer_token = token(&r, customer_id, "account keys billing").await;
    let admin_token = token(&r, admin_id, "account keys billing admin").await;
    let customer_session = sign_in(&r, &c, "hostile@example.com").await;
    let leaver_id = user(&r, "leaver@example.com", "user", 0).await;
    let leaver_session = sign_in(&r, &c, "leaver@example.com").await;
    Ctx {
        r,
        c,
        key,
        customer_token,
        admin_token,
        victim_id,
        leaver_id,
        customer_session,
        leaver_session,
        spare_key_id: spare.id,
    }
}

/// Normal requests after the suite: answered, logged and charged; the ledger verifies.
async fn still_writes(ctx: &Ctx) {
    let r = &ctx.r;
    let db = &r.server_state.db;
    let (uid, key) = r
        .customer(
            "after@example.com",
            10 * USD,
            NewKey {
                name: "after".into(),
                ..NewKey::default()
            },
        )
        .await;
    let before = accounts::get_user(db, uid).await.unwrap().balance_nano;
    for i in 0..3 {
        let (s, _, v) = common::chat(
            &r.base,
            &key,
            json!({"model": "mock/fast-1", "max_tokens": 16,
                   "messages": [{"role": "user", "content": format!("after {i}")}]}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let resp = ctx
        .c
        .post(format!("{}/v1/messages", r.base))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "mock/fast-1", "max_tokens": 16,
                      "messages": [{"role": "user", "content": "after"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let logs = common::wait_for_logs(r, uid, 4).await;
    assert_eq!(logs.len(), 4);
    assert!(
        logs.iter().all(|l| l.status == 200 && l.cost_nano > 0),
        "{logs:?}"
    );
    let cost: i64 = logs.iter().map(|l| l.cost_nano).sum();
    let mut after = 0;
    for _ in 0..200 {
        after = accounts::get_user(db, uid).await.unwrap().balance_nano;
        if after == before - cost {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        after,
        before - cost,
        "charges of the requests after the suite"
    );

    let mismatches = accounts::verify_ledger(db, None).await.unwrap();
    assert!(mismatches.is_empty(), "ledger: {mismatches:?}");
    let resp = ctx
        .c
        .get(format!("{}/api/v1/admin/ledger/verify", r.base))
        .bearer_auth(&ctx.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let stats = r.server_state.gateway.meter.stats();
    let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
    let quarantined = stats.quarantined.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped, 0, "usage rows the database refused");
    assert_eq!(
        quarantined, 0,
        "usage rows the database refused with their text"
    );
}

/// No account's address or name, and no key's name, holds a control character: they are
/// shown in the portal, printed by the CLI to terminals (an ESC would drive them) and
/// written to CSV exports.
async fn no_control_characters_in_names(ctx: &Ctx) -> Vec<String> {
    let db = &ctx.r.server_state.db;
    let bad = |s: &str| s.chars().any(char::is_control);
    let mut problems = Vec::new();
    for u in accounts::search_users(db, "", 100_000).await.unwrap() {
        if bad(&u.email) || bad(&u.display_name) {
            problems.push(format!(
                "user {} stored with control characters: {:?} {:?}",
                u.id, u.email, u.display_name
            ));
        }
        for k in keys::list_for_user(db, u.id).await.unwrap() {
            if bad(&k.name) {
                problems.push(format!("key {} named {:?}", k.id, k.name));
            }
        }
    }
    problems
}

/// No column holds a client's megabyte string.
async fn nothing_huge_stored(ctx: &Ctx) -> Vec<String> {
    let db = &ctx.r.server_state.db;
    let pool = db.pool();
    let columns: Vec<(String, String)> = match db.kind() {
        DbKind::Postgres => sqlx::query(
            "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
             WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'bytea')",
        )
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get::<String, _>("t"), row.get::<String, _>("c")))
        .collect(),
        DbKind::Sqlite => {
            let tables: Vec<String> = sqlx::query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>("name"))
            .collect();
            let mut out = Vec::new();
            for t in tables {
                for row in sqlx::query(&format!("SELECT name, type FROM pragma_table_info('{t}')"))
                    .fetch_all(pool)
                    .await
                    .unwrap()
                {
                    let ty: String = row.get("type");
                    if !ty.to_ascii_uppercase().contains("INT") {
                        out.push((t.clone(), row.get::<String, _>("name")));
                    }
                }
            }
            out
        }
    };
    let mut problems = Vec::new();
    for (t, c) in columns {
        let len = match db.kind() {
            DbKind::Postgres => format!("OCTET_LENGTH(CAST(\"{c}\" AS TEXT))"),
            DbKind::Sqlite => format!("LENGTH(CAST(\"{c}\" AS BLOB))"),
        };
        let q = format!("SELECT CAST(COALESCE(MAX({len}), 0) AS BIGINT) AS m FROM \"{t}\"");
        let m: i64 = sqlx::query(&q).fetch_one(pool).await.unwrap().get("m");
        let cap = if t == "responses"
            && ["input_items", "output_items", "response"].contains(&c.as_str())
        {
            STORED_RESPONSE_CAP
        } else {
            STORED_TEXT_CAP
        };
        if m > cap {
            problems.push(format!("{t}.{c} holds {m} bytes"));
        }
    }
    problems
}

async fn suite(database_url: Option<String>) {
    let started = Instant::now();
    let ctx = setup(database_url).await;
    let doc: Value = ctx
        .c
        .get(format!("{}/openapi.json", ctx.r.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ops = operations(&doc);
    for prefix in ["/v1/", "/api/v1/", "/auth/", "/webhooks/"] {
        assert!(
            ops.iter().any(|o| o.template.starts_with(prefix)),
            "no {prefix} route in the document"
        );
    }
    let cases: Vec<Case> = ops.iter().flat_map(|op| cases_for(&ctx, op)).collect();
    let total = cases.len();
    let results: Vec<(Case, Option<u16>, Option<String>)> = futures::stream::iter(cases)
        .map(|case| {
            let ctx = &ctx;
            async move {
                let (status, problem) = run(ctx, &case).await;
                (case, status, problem)
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;

    // `HOSTILE_DUMP=<file>` writes every case and its answer, one per line, for review.
    if let Ok(file) = std::env::var("HOSTILE_DUMP") {
        let lines: Vec<String> = results
            .iter()
            .map(|(c, s, p)| {
                format!(
                    "{}\t{} {}\t{}\t{}\t{}",
                    s.map_or("-".into(), |s| s.to_string()),
                    c.method,
                    c.template,
                    c.who_name(),
                    c.label,
                    p.as_deref().unwrap_or("")
                )
            })
            .collect();
        std::fs::write(file, lines.join("\n")).unwrap();
    }
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut known_seen = Vec::new();
    for (case, status, problem) in &results {
        *by_status
            .entry(status.map_or("none".into(), |s| s.to_string()))
            .or_default() += 1;
        if let Some(p) = problem {
            let line = format!(
                "{} {} [{}] ({}): {p}",
                case.method,
                case.template,
                case.label,
                case.who_name()
            );
            match known(case) {
                Some(why) => known_seen.push(format!("{line} — known: {why}")),
                None => problems.push(line),
            }
        }
    }
    problems.sort();
    problems.dedup();
    eprintln!(
        "{total} hostile requests over {} operations in {:?}; statuses {by_status:?}",
        ops.len(),
        started.elapsed()
    );
    for k in &known_seen {
        eprintln!("KNOWN {k}");
    }

    problems.extend(nothing_huge_stored(&ctx).await);
    problems.extend(no_control_characters_in_names(&ctx).await);
    still_writes(&ctx).await;
    eprintln!("suite done in {:?}", started.elapsed());
    ctx.r.stop().await;
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

impl Case {
    fn who_name(&self) -> &'static str {
        match self.who {
            Who::Anon => "anonymous",
            Who::Valid => "valid credentials",
            Who::CustomerOnAdmin => "customer on admin",
            Who::SessionFrom(_) => "session from another origin",
            Who::Header(..) => "hostile credentials",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_on_sqlite() {
    suite(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_on_postgres() {
    on_postgres(suite).await;
}

/// An answer given before the body was read (401 to a request without credentials) still
/// reaches a client that goes on sending its body: the server reads the rest first instead
/// of closing a connection with unread bytes, which the kernel answers with a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_are_not_reset() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let r = common::start(None, &[]).await;
    let addr = r.base.trim_start_matches("http://").to_string();
    for path in ["/v1/chat/completions", "/api/v1/me/keys"] {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let len = 2_000_000;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {len}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // Give the server time to answer from the head alone, then send the body.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < len {
            let n = chunk.len().min(len - sent);
            if let Err(e) = s.write_all(&chunk[..n]).await {
                panic!("{path}: the body could not be sent after {sent} bytes: {e}");
            }
            sent += n;
        }
        let mut answer = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => {
                    answer.extend_from_slice(&buf[..n]);
                    // One answer is all this test waits for.
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                        break;
                    }
                }
                Ok(Err(e)) => panic!("{path}: the answer was lost: {e}"),
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 401"), "{path}: {text}");
    }
    r.stop().await;
}
