//! Property tests of the Responses translators: requests, stored history and whole answers
//! of arbitrary shape never make them panic, and whatever they accept translates to a
//! body of the target format.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tokengate_core::money::Usage;

use super::{ResponseCtx, request, response};

/// Field names the translators look at, so arbitrary values reach their deeper paths.
const KEYS: &[&str] = &[
    "type",
    "role",
    "content",
    "text",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "name",
    "arguments",
    "call_id",
    "output",
    "summary",
    "encrypted_content",
    "image_url",
    "file_data",
    "file_url",
    "format",
    "schema",
    "mode",
    "parameters",
    "max_output_tokens",
    "temperature",
    "top_p",
    "reasoning",
    "effort",
    "stream",
    "choices",
    "message",
    "tool_calls",
    "function",
    "finish_reason",
    "stop_reason",
    "thinking",
    "signature",
    "id",
    "usage",
    "model",
    "reasoning_content",
    "refusal",
    "parallel_tool_calls",
    "user",
];

const WORDS: &[&str] = &[
    "message",
    "user",
    "assistant",
    "system",
    "developer",
    "input_text",
    "output_text",
    "input_image",
    "input_file",
    "function_call",
    "function_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "reasoning",
    "item_reference",
    "function",
    "custom",
    "namespace",
    "web_search",
    "allowed_tools",
    "auto",
    "none",
    "required",
    "json_schema",
    "json_object",
    "text",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "length",
    "max_tokens",
    "ant-sig:S",
    "ant-redacted:R",
    "data:image/png;base64,AAAA",
    "{\"input\":\"x\"}",
    "{",
    "",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        prop::sample::select(WORDS).prop_map(|s| json!(s)),
        ".{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn arb_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((prop::sample::select(KEYS), arb_json()), 0..8)
        .prop_map(|kv| kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn request_translation_never_panics(req in arb_object(), history in prop::collection::vec(arb_json(), 0..3),
        cap in any::<i64>()) {
        if let Ok(c) = request::to_chat(&req, &history, "max_tokens") {
            prop_assert!(c["messages"].is_array());
        }
        if let Ok(a) = request::to_anthropic(&req, &history, cap) {
            prop_assert!(a["messages"].is_array() && a["max_tokens"].is_i64());
        }
        if let Ok(items) = request::input_items(&req) {
            prop_assert!(items.iter().all(|i| i["id"].is_string()));
        }
    }

    #[test]
    fn answer_translation_never_panics(body in arb_json(), req in arb_object()) {
        let ctx = ResponseCtx { id: "resp_x".into(), created_at: 0, request: req };
        for r in [
            response::from_chat(&body, &Usage::default(), &ctx),
            response::from_anthropic(&body, &Usage::default(), &ctx),
        ] {
            prop_assert_eq!(r["object"].as_str(), Some("response"));
            prop_assert!(r["output"].is_array() && r["usage"]["total_tokens"].is_i64());
        }
    }
}
