//! The `/v1` wire formats as the OpenAPI document describes them: OpenAI's and
//! Anthropic's request and answer bodies, their error bodies and the error response sets
//! the gateway's `#[utoipa::path]` annotations list. The gateway passes bodies through
//! (and translates them) as JSON, so these types exist for the document only;
//! `server/tests/docs.rs` and `end2end/tests/test_docs.py` check live answers against them.
//! `crate::docs` reads them from here (the gateway does not depend on `docs`).

use serde_json::Value;
use utoipa::{IntoResponses, ToSchema};

// ---------------------------------------------------------------------------------------
// Error bodies

/// The error body of `/v1` (OpenAI's shape).
#[derive(ToSchema)]
#[schema(example = json!({"error": {"message": "Invalid API key provided.",
    "type": "authentication_error", "param": null, "code": "invalid_api_key"}}))]
pub struct OpenAiError {
    pub error: OpenAiErrorDetail,
}

/// What went wrong, in OpenAI's terms.
#[derive(ToSchema)]
pub struct OpenAiErrorDetail {
    /// A sentence for people.
    pub message: String,
    /// `authentication_error`, `insufficient_quota`, `permission_error`,
    /// `invalid_request_error`, `rate_limit_error` or `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request parameter at fault (`model`, `messages`, …), or null.
    #[schema(required = true)]
    pub param: Option<String>,
    /// Machine-readable code: `invalid_api_key`, `insufficient_balance`,
    /// `model_not_allowed`, `model_not_found`, `rate_limit_exceeded`, `invalid_request`,
    /// `request_too_large`, `upstream_rejected`, `upstream_error`, `internal_error`.
    pub code: String,
}

/// The error body of `/v1/messages` (Anthropic's shape).
#[derive(ToSchema)]
#[schema(example = json!({"type": "error", "error": {"type": "authentication_error",
    "message": "Invalid API key provided."}}))]
pub struct AnthropicError {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub error: AnthropicErrorDetail,
}

/// What went wrong, in Anthropic's terms.
#[derive(ToSchema)]
pub struct AnthropicErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `billing_error`,
    /// `permission_error`, `not_found_error`, `request_too_large`, `rate_limit_error`,
    /// `api_error`, `overloaded_error` or `timeout_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

// ---------------------------------------------------------------------------------------
// Error response sets

/// Errors of `POST /v1/chat/completions` and `POST /v1/embeddings`.
#[derive(IntoResponses)]
pub enum GatewayErrors {
    /// Malformed body or parameters (`invalid_request_error` / `invalid_request`), or the
    /// upstream refused the request as the caller's mistake (`upstream_rejected`). Fix the
    /// request; retrying it unchanged fails again.
    #[response(status = 400, example = json!({"error": {"message": "'messages' must be a non-empty array.",
        "type": "invalid_request_error", "param": "messages", "code": "invalid_request"}}))]
    BadRequest(OpenAiError),
    /// Missing, malformed, unknown, revoked, disabled or expired API key, or a suspended
    /// account (`authentication_error` / `invalid_api_key`).
    #[response(status = 401, example = json!({"error": {"message": "Invalid API key provided.",
        "type": "authentication_error", "param": null, "code": "invalid_api_key"}}))]
    Unauthorized(OpenAiError),
    /// The balance (less running requests' holds) or the key's spend limit cannot cover
    /// the request's worst case (`insufficient_quota` / `insufficient_balance`). Top up.
    #[response(status = 402, example = json!({"error": {"message": "Your balance is too low for this request. Top up your account to continue.",
        "type": "insufficient_quota", "param": null, "code": "insufficient_balance"}}))]
    PaymentRequired(OpenAiError),
    /// The key may not use this model (`permission_error` / `model_not_allowed`).
    #[response(status = 403, example = json!({"error": {"message": "This API key is not allowed to use the model `mock/smart-1`.",
        "type": "permission_error", "param": "model", "code": "model_not_allowed"}}))]
    Forbidden(OpenAiError),
    /// No model or alias of that name (`invalid_request_error` / `model_not_found`).
    #[response(status = 404, example = json!({"error": {"message": "The model `gpt-9` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}))]
    NotFound(OpenAiError),
    /// The body is larger than `max_body_bytes` (`request_too_large`).
    #[response(status = 413, example = json!({"error": {"message": "Request body is larger than the limit of 10485760 bytes.",
        "type": "invalid_request_error", "param": null, "code": "request_too_large"}}))]
    TooLarge(OpenAiError),
    /// The key's RPM or TPM limit is reached (`rate_limit_error` /
    /// `rate_limit_exceeded`); wait `Retry-After` seconds.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds until the request can be admitted")),
        example = json!({"error": {"message": "Rate limit reached for this API key (requests per minute). Retry after 12 s.",
        "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}}))]
    RateLimited(OpenAiError),
    /// No upstream could answer: bad answer from every target (`api_error` /
    /// `upstream_error`). Retry with backoff.
    #[response(status = 502, example = json!({"error": {"message": "The upstream provider failed (500).",
        "type": "api_error", "param": null, "code": "upstream_error"}}))]
    BadGateway(OpenAiError),
    /// No target is available now (all failing or circuit open). Retry with backoff.
    #[response(status = 503, example = json!({"error": {"message": "No provider is available for this model.",
        "type": "api_error", "param": null, "code": "upstream_error"}}))]
    Unavailable(OpenAiError),
    /// The upstream did not answer in time. Retry with backoff.
    #[response(status = 504, example = json!({"error": {"message": "The upstream provider timed out.",
        "type": "api_error", "param": null, "code": "upstream_error"}}))]
    Timeout(OpenAiError),
}

/// Errors of `POST /v1/messages`, in Anthropic's shape.
#[derive(IntoResponses)]
pub enum MessagesErrors {
    /// Malformed body (`invalid_request_error`), e.g. `max_tokens` missing.
    #[response(status = 400, example = json!({"type": "error", "error": {"type": "invalid_request_error",
        "message": "max_tokens: Field required"}}))]
    BadRequest(AnthropicError),
    /// Missing or unusable API key (`authentication_error`).
    #[response(status = 401, example = json!({"type": "error", "error": {"type": "authentication_error",
        "message": "Invalid API key provided."}}))]
    Unauthorized(AnthropicError),
    /// Balance or spend limit exhausted (`billing_error`). Top up.
    #[response(status = 402, example = json!({"type": "error", "error": {"type": "billing_error",
        "message": "Your balance is too low for this request. Top up your account to continue."}}))]
    PaymentRequired(AnthropicError),
    /// Model not enabled for the key (`permission_error`).
    #[response(status = 403, example = json!({"type": "error", "error": {"type": "permission_error",
        "message": "This API key is not allowed to use the model `mock/smart-1`."}}))]
    Forbidden(AnthropicError),
    /// Unknown model (`not_found_error`).
    #[response(status = 404, example = json!({"type": "error", "error": {"type": "not_found_error",
        "message": "The model `claude-9` does not exist or you do not have access to it."}}))]
    NotFound(AnthropicError),
    /// Body over the limit (`request_too_large`).
    #[response(status = 413, example = json!({"type": "error", "error": {"type": "request_too_large",
        "message": "Request body is larger than the limit of 10485760 bytes."}}))]
    TooLarge(AnthropicError),
    /// Rate limit of the key (`rate_limit_error`); wait `Retry-After` seconds.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds until the request can be admitted")),
        example = json!({"type": "error", "error": {"type": "rate_limit_error",
        "message": "Rate limit reached for this API key (requests per minute). Retry after 12 s."}}))]
    RateLimited(AnthropicError),
    /// Every upstream failed (`api_error`).
    #[response(status = 502, example = json!({"type": "error", "error": {"type": "api_error",
        "message": "The upstream provider failed (500)."}}))]
    BadGateway(AnthropicError),
    /// No upstream available (`overloaded_error`).
    #[response(status = 503, example = json!({"type": "error", "error": {"type": "overloaded_error",
        "message": "No provider is available for this model."}}))]
    Unavailable(AnthropicError),
    /// Upstream timeout (`timeout_error`).
    #[response(status = 504, example = json!({"type": "error", "error": {"type": "timeout_error",
        "message": "The upstream provider timed out."}}))]
    Timeout(AnthropicError),
}

/// Missing, malformed, unknown, revoked, disabled or expired API key.
#[derive(IntoResponses)]
#[response(status = 401, example = json!({"error": {"message": "Invalid API key provided.",
    "type": "authentication_error", "param": null, "code": "invalid_api_key"}}))]
pub struct InvalidApiKey(pub OpenAiError);

// ---------------------------------------------------------------------------------------
// /v1 wire formats

/// An OpenAI Chat Completions request. Fields not listed are passed to OpenAI-compatible
/// upstreams as they are; see the docs page "OpenAI and Anthropic SDKs" for how they are
/// translated for Anthropic upstreams.
#[derive(ToSchema)]
#[schema(example = json!({"model": "tokengate-fast", "messages": [{"role": "user", "content": "Hello"}]}))]
pub struct ChatCompletionRequest {
    /// A model or alias from `GET /v1/models`.
    #[schema(example = "tokengate-fast")]
    pub model: String,
    #[schema(min_items = 1)]
    pub messages: Vec<ChatMessage>,
    /// `true` answers with server-sent events.
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Upper bound of generated tokens; also sizes the balance hold.
    #[schema(minimum = 1)]
    pub max_completion_tokens: Option<i64>,
    /// Older name of `max_completion_tokens`.
    #[schema(minimum = 1)]
    pub max_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// A stop string or up to 4 of them.
    #[schema(value_type = Option<Value>)]
    pub stop: Option<Value>,
    /// Function tools, OpenAI format.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Value>>,
    #[schema(value_type = Option<Value>)]
    pub tool_choice: Option<Value>,
    /// Only `{"type":"text"}` can be served by Anthropic upstreams.
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<Value>,
    /// Must be 1 when an Anthropic upstream serves the model.
    pub n: Option<i64>,
    pub user: Option<String>,
}

/// One chat message.
#[derive(ToSchema)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    #[schema(example = "user")]
    pub role: String,
    /// Text, or an array of content parts (`text`, `image_url`).
    #[schema(value_type = Value, example = "Hello")]
    pub content: Value,
    pub name: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub tool_calls: Option<Vec<Value>>,
    pub tool_call_id: Option<String>,
}

/// Streaming options.
#[derive(ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` (tokengate always asks the upstream for it, and
    /// removes it again unless you set this).
    pub include_usage: Option<bool>,
}

/// A chat completion (`stream: false`). Passed through from the upstream in OpenAI's
/// format (translated when an Anthropic upstream served it).
#[derive(ToSchema)]
#[schema(example = json!({"id": "chatcmpl-0123456789abcdef", "object": "chat.completion", "created": 1_700_000_000u64,
    "model": "mock/fast-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help?"},
    "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}}))]
pub struct ChatCompletion {
    pub id: String,
    /// `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: ChatUsage,
}

/// One generated answer.
#[derive(ToSchema)]
pub struct ChatChoice {
    pub index: i64,
    pub message: ChatAnswer,
    /// `stop`, `length`, `tool_calls` or `content_filter`.
    pub finish_reason: Option<String>,
}

/// The assistant's message.
#[derive(ToSchema)]
pub struct ChatAnswer {
    /// `assistant`.
    pub role: String,
    pub content: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub tool_calls: Option<Vec<Value>>,
}

/// Token usage, as the upstream reported it. This is what the request is billed on.
#[derive(ToSchema)]
pub struct ChatUsage {
    /// Input tokens, cached ones included.
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// Input-token details.
#[derive(ToSchema)]
pub struct PromptTokensDetails {
    /// Input tokens read from the provider's prompt cache (billed at the cache-read price).
    pub cached_tokens: Option<i64>,
}

/// An Anthropic Messages request.
#[derive(ToSchema)]
#[schema(example = json!({"model": "tokengate-fast", "max_tokens": 256,
    "messages": [{"role": "user", "content": "Hello"}]}))]
pub struct MessagesRequest {
    /// A model or alias from `GET /v1/models`.
    #[schema(example = "tokengate-fast")]
    pub model: String,
    /// Required, as Anthropic requires it; also sizes the balance hold.
    #[schema(minimum = 1, example = 256)]
    pub max_tokens: i64,
    #[schema(min_items = 1)]
    pub messages: Vec<AnthropicMessage>,
    /// A string or an array of text blocks.
    #[schema(value_type = Option<Value>)]
    pub system: Option<Value>,
    pub stream: Option<bool>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub stop_sequences: Option<Vec<String>>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Value>>,
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// One Anthropic message.
#[derive(ToSchema)]
pub struct AnthropicMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// Text, or an array of content blocks (`text`, `image`, `tool_use`, `tool_result`).
    #[schema(value_type = Value, example = "Hello")]
    pub content: Value,
}

/// An Anthropic message answer (`stream: false`).
#[derive(ToSchema)]
#[schema(example = json!({"id": "msg_0123456789abcdef", "type": "message", "role": "assistant",
    "content": [{"type": "text", "text": "Hello! How can I help?"}], "model": "mock/fast-1",
    "stop_reason": "end_turn", "stop_sequence": null, "usage": {"input_tokens": 9, "output_tokens": 6}}))]
pub struct MessagesResponse {
    pub id: String,
    /// `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `assistant`.
    pub role: String,
    /// Content blocks (`text`, `tool_use`).
    #[schema(value_type = Vec<Object>)]
    pub content: Vec<Value>,
    pub model: String,
    /// `end_turn`, `max_tokens`, `stop_sequence` or `tool_use`.
    pub stop_reason: Option<String>,
    pub stop_sequence: Option<String>,
    pub usage: AnthropicUsage,
}

/// Anthropic token usage; billed as reported.
#[derive(ToSchema)]
pub struct AnthropicUsage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_input_tokens: Option<i64>,
    pub cache_creation_input_tokens: Option<i64>,
}

/// An OpenAI embeddings request.
#[derive(ToSchema)]
#[schema(example = json!({"model": "mock/fast-1", "input": ["first text", "second text"]}))]
pub struct EmbeddingsRequest {
    #[schema(example = "mock/fast-1")]
    pub model: String,
    /// A non-empty string, an array of non-empty strings, or an array of token arrays.
    #[schema(value_type = Value, example = json!(["first text", "second text"]))]
    pub input: Value,
    /// `float` (default) or `base64`.
    pub encoding_format: Option<String>,
    pub dimensions: Option<i64>,
    pub user: Option<String>,
}

/// Embeddings, one per input, in input order.
#[derive(ToSchema)]
#[schema(example = json!({"object": "list", "model": "mock/fast-1",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.0123, -0.0456, 0.0789]}],
    "usage": {"prompt_tokens": 2, "total_tokens": 2}}))]
pub struct EmbeddingsResponse {
    /// `list`.
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingsUsage,
}

/// One embedding.
#[derive(ToSchema)]
pub struct Embedding {
    /// `embedding`.
    pub object: String,
    pub index: i64,
    /// An array of floats, or a base64 string of little-endian float32s with
    /// `encoding_format: "base64"`.
    #[schema(value_type = Value)]
    pub embedding: Value,
}

/// Embedding usage: billed on input tokens.
#[derive(ToSchema)]
pub struct EmbeddingsUsage {
    pub prompt_tokens: i64,
    pub total_tokens: i64,
}

/// The models and aliases a key may use.
#[derive(ToSchema)]
#[schema(example = json!({"object": "list", "data": [{"id": "mock/fast-1", "object": "model",
    "created": 1_700_000_000u64, "owned_by": "mock", "complexity_tier": "fast",
    "input_usd_per_1k": "0.00015", "output_usd_per_1k": "0.0006"}]}))]
pub struct ModelList {
    /// `list`.
    pub object: String,
    pub data: Vec<ModelEntry>,
}

/// A model or alias with its price.
#[derive(ToSchema)]
pub struct ModelEntry {
    /// What to send as `model`.
    #[schema(example = "openai/gpt-4o-mini")]
    pub id: String,
    /// `model`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The provider, or `tokengate` for an alias.
    pub owned_by: String,
    /// `fast`, `standard`, `smart`, … as the operator set it.
    pub complexity_tier: String,
    /// USD per 1,000 input tokens, exact.
    #[schema(example = "0.00015")]
    pub input_usd_per_1k: String,
    /// USD per 1,000 output tokens, exact.
    #[schema(example = "0.0006")]
    pub output_usd_per_1k: String,
}
