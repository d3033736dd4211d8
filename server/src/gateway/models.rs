//! `GET /v1/models`: every model and alias the key may use, with its price per 1k tokens.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use tokengate_core::money::format_price_per_1k;

use super::Gateway;
use super::error::GatewayError;
use super::wire::{InvalidApiKey, ModelList};

/// List models
///
/// Every model and alias this key may use, with its price per 1,000 tokens. Send the `id`
/// as `model`.
#[utoipa::path(
    get,
    path = "/models",
    tag = "Gateway",
    operation_id = "list_models",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The models and aliases the key may use.", body = ModelList),
        InvalidApiKey,
    ),
)]
pub async fn list_models(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Json<Value>, GatewayError> {
    let key = gw.authenticate(&headers)?;
    let routes = gw.routes.load();
    let data: Vec<Value> = routes
        .listing
        .iter()
        .filter(|m| routes.lists(&key, m))
        .map(|m| {
            json!({
                "id": m.id,
                "object": "model",
                "created": m.created_ms / 1000,
                "owned_by": m.owned_by,
                "complexity_tier": m.complexity_tier,
                "input_usd_per_1k": format_price_per_1k(m.input_per_m),
                "output_usd_per_1k": format_price_per_1k(m.output_per_m),
            })
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}
