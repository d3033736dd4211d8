//! The OpenAI Responses API wire shapes (`/v1/responses`) as the OpenAPI document
//! describes them. The gateway handles these bodies as JSON; the types exist for the
//! document only. Translation lives in `translate::responses`, the endpoints in
//! `gateway::responses`.

use serde_json::Value;
use utoipa::ToSchema;

/// An OpenAI Responses request. Served by any provider: translated to Chat Completions or
/// Anthropic Messages, or sent as is to a provider marked `responses = "native"`.
#[derive(ToSchema)]
#[schema(example = json!({"model": "tokengate-fast", "input": "Say hello",
    "instructions": "You are terse."}))]
pub struct ResponsesRequest {
    /// A model or alias from `GET /v1/models`.
    #[schema(example = "tokengate-fast")]
    pub model: String,
    /// A string (one user message) or a list of input items: `message` (roles `user`,
    /// `assistant`, `system`, `developer`; parts `input_text`, `input_image`,
    /// `input_file`), `function_call`, `function_call_output`, `custom_tool_call`,
    /// `custom_tool_call_output`, `reasoning`.
    #[schema(value_type = Value)]
    pub input: Value,
    /// A system message placed before the input (not carried over to continuations).
    pub instructions: Option<String>,
    /// `function` tools (`name`, `description`, `parameters`, `strict`) and `custom`
    /// free-form tools (with or without a `format` grammar). Hosted tools are dropped.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Value>>,
    #[schema(value_type = Option<Value>)]
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    /// `true` answers with Responses server-sent events ending in exactly one of
    /// `response.completed`, `response.incomplete` or `response.failed`.
    pub stream: Option<bool>,
    /// Keep the response (default `true`) for `GET /v1/responses/{id}` and
    /// `previous_response_id`; kept for `responses_retention_days`.
    pub store: Option<bool>,
    /// Continue from a stored response of the same account; served by the provider that
    /// served it (no fallback).
    pub previous_response_id: Option<String>,
    /// Upper bound of generated tokens (reasoning included); also sizes the balance hold.
    #[schema(minimum = 1)]
    pub max_output_tokens: Option<i64>,
    /// `{effort, summary}`.
    #[schema(value_type = Option<Object>)]
    pub reasoning: Option<Value>,
    /// `{format: {type: text | json_object | json_schema}, verbosity}`.
    #[schema(value_type = Option<Object>)]
    pub text: Option<Value>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    pub user: Option<String>,
}

/// Token usage of a response; every field is always present.
#[derive(ToSchema)]
pub struct ResponseUsage {
    /// Every input token, cached ones included.
    pub input_tokens: i64,
    /// `{cached_tokens}`.
    #[schema(value_type = Object)]
    pub input_tokens_details: Value,
    /// Generated tokens, reasoning included.
    pub output_tokens: i64,
    /// `{reasoning_tokens}`.
    #[schema(value_type = Object)]
    pub output_tokens_details: Value,
    pub total_tokens: i64,
}

/// A Response object, as OpenAI returns it (the request's parameters are echoed too).
#[derive(ToSchema)]
#[schema(example = json!({"id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
    "object": "response", "created_at": 1741476542, "status": "completed",
    "model": "tokengate-fast", "output": [{"id": "msg_1", "type": "message",
    "status": "completed", "role": "assistant", "content": [{"type": "output_text",
    "text": "Hello", "annotations": []}]}], "usage": {"input_tokens": 9,
    "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 2,
    "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 11},
    "error": null, "incomplete_details": null, "previous_response_id": null, "store": true}))]
pub struct ResponseObject {
    /// `resp_` and hex digits.
    pub id: String,
    /// Always `response`.
    pub object: String,
    /// Unix seconds.
    pub created_at: i64,
    /// `completed`, `incomplete`, `failed` or `in_progress`.
    pub status: String,
    pub model: String,
    /// Output items: `message` (`output_text` parts), `function_call`,
    /// `custom_tool_call`, `reasoning`.
    #[schema(value_type = Vec<Object>)]
    pub output: Vec<Value>,
    pub usage: Option<ResponseUsage>,
    /// `{code, message}` of a failed response (`server_error`, `rate_limit_exceeded`,
    /// `insufficient_quota`, `context_length_exceeded`).
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// `{reason}` of an incomplete response (`max_output_tokens`, `content_filter`).
    #[schema(value_type = Option<Object>)]
    pub incomplete_details: Option<Value>,
    pub previous_response_id: Option<String>,
    pub store: bool,
}

/// The answer to deleting a stored response.
#[derive(ToSchema)]
#[schema(example = json!({"id": "resp_1", "object": "response", "deleted": true}))]
pub struct ResponseDeleted {
    pub id: String,
    /// Always `response`.
    pub object: String,
    pub deleted: bool,
}

/// A page of a stored response's input items.
#[derive(ToSchema)]
pub struct ResponseItemList {
    /// Always `list`.
    pub object: String,
    /// Input items, each with an `id`.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Value>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}
