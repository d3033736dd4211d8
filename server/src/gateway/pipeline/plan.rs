//! Stage 2, plan: which targets a call may be served by, in the order they are tried. The
//! model or alias is resolved in the routing snapshot (an alias expands tier by tier,
//! weighted random within a tier), then narrowed by the key's policy (its own and its
//! group's allowed models and providers). Nothing is held or counted yet.

use std::sync::Arc;

use tokengate_core::keys::ApiKey;

use super::super::error::GatewayError;
use super::super::routes::{Routes, Target};

/// The targets `key` may use for `model`, in order, or the error the client gets: an
/// unknown name, a name the key may not use, or a name no enabled provider serves.
pub(super) fn plan(
    routes: &Routes,
    key: &ApiKey,
    model: &str,
) -> Result<Vec<Arc<Target>>, GatewayError> {
    let candidates = routes.candidates(model).ok_or_else(|| {
        GatewayError::ModelNotFound(format!(
            "The model `{model}` does not exist or you do not have access to it."
        ))
    })?;
    let candidates = routes.permitted(key, model, candidates).ok_or_else(|| {
        GatewayError::ModelNotAllowed(format!(
            "This API key is not allowed to use the model `{model}`."
        ))
    })?;
    if candidates.is_empty() {
        return Err(GatewayError::Upstream {
            status: 503,
            message: "No provider is available for this model.".into(),
        });
    }
    Ok(candidates)
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::HashMap;

    use tokengate_core::catalog::{
        Alias, AliasTarget, Catalog, KeyGroup, Model, Provider, ProviderKind,
    };

    use super::super::super::providers::http::UpstreamLimits;
    use super::super::super::routes::AdapterEnv;
    use super::*;

    pub(in super::super) fn model(id: i64, provider_id: i64, name: &str) -> Model {
        Model {
            id,
            name: name.into(),
            provider_id,
            upstream_model: name.rsplit('/').next().unwrap_or(name).into(),
            input_price_nano: 1_000_000_000,
            output_price_nano: 2_000_000_000,
            cache_read_price_nano: None,
            cache_write_price_nano: None,
            max_output_tokens: 1000,
            complexity_tier: "fast".into(),
            enabled: true,
            created_at: 0,
        }
    }

    fn provider(id: i64, name: &str, kind: ProviderKind) -> Provider {
        Provider {
            id,
            name: name.into(),
            kind,
            base_url: Some("https://upstream.example".into()),
            api_key_enc: None,
            config: serde_json::json!({}),
            enabled: true,
            created_at: 0,
        }
    }

    /// Two providers (`mock`, `claude`), a model on each, an alias over both (mock
    /// first), an alias with no targets, and a key group limited to `claude`.
    fn routes() -> Routes {
        let catalog = Catalog {
            providers: vec![
                provider(1, "mock", ProviderKind::Mock),
                provider(2, "claude", ProviderKind::Anthropic),
            ],
            models: vec![model(10, 1, "mock/fast-1"), model(20, 2, "claude/sonnet")],
            aliases: vec![
                Alias {
                    id: 1,
                    name: "best".into(),
                    description: String::new(),
                    complexity_tier: "fast".into(),
                    enabled: true,
                    targets: vec![
                        AliasTarget {
                            model_id: 20,
                            priority: 2,
                            weight: 1,
                        },
                        AliasTarget {
                            model_id: 10,
                            priority: 1,
                            weight: 1,
                        },
                    ],
                    created_at: 0,
                },
                Alias {
                    id: 2,
                    name: "empty".into(),
                    description: String::new(),
                    complexity_tier: "fast".into(),
                    enabled: true,
                    targets: vec![],
                    created_at: 0,
                },
            ],
            key_groups: vec![KeyGroup {
                id: 7,
                name: "claude-only".into(),
                allowed_providers: Some(vec!["claude".into()]),
                allowed_models: None,
                created_at: 0,
            }],
        };
        let client = reqwest::Client::new();
        let keys = HashMap::new();
        Routes::build(
            &catalog,
            &AdapterEnv {
                client: &client,
                limits: UpstreamLimits::default(),
                provider_keys: &keys,
            },
        )
    }

    fn key(group_id: Option<i64>, allowed_models: Option<Vec<&str>>) -> ApiKey {
        ApiKey {
            id: 1,
            user_id: 1,
            name: "k".into(),
            key_prefix: "tg_".into(),
            key_hash: String::new(),
            status: tokengate_core::keys::KeyStatus::Active,
            group_id,
            allowed_models: allowed_models.map(|l| l.into_iter().map(String::from).collect()),
            spend_limit_nano: None,
            spent_nano: 0,
            rpm: None,
            tpm: None,
            expires_at: None,
            last_used_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn names(r: Result<Vec<Arc<Target>>, GatewayError>) -> Result<Vec<String>, GatewayError> {
        r.map(|ts| ts.iter().map(|t| t.model.name.clone()).collect())
    }

    #[test]
    fn plan_resolves_and_applies_the_key_policy() {
        let routes = routes();
        let not_found = |m: &str| {
            Err(GatewayError::ModelNotFound(format!(
                "The model `{m}` does not exist or you do not have access to it."
            )))
        };
        let not_allowed = |m: &str| {
            Err(GatewayError::ModelNotAllowed(format!(
                "This API key is not allowed to use the model `{m}`."
            )))
        };
        let ok = |l: &[&str]| Ok(l.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        type Case<'a> = (ApiKey, &'a str, Result<Vec<String>, GatewayError>);
        let cases: Vec<Case<'_>> = vec![
            (key(None, None), "mock/fast-1", ok(&["mock/fast-1"])),
            (key(None, None), "nope", not_found("nope")),
            // An alias expands priority tier by priority tier.
            (
                key(None, None),
                "best",
                ok(&["mock/fast-1", "claude/sonnet"]),
            ),
            // An alias none of whose targets is enabled does not exist.
            (key(None, None), "empty", not_found("empty")),
            // The key's own list.
            (
                key(None, Some(vec!["mock/*"])),
                "mock/fast-1",
                ok(&["mock/fast-1"]),
            ),
            (key(None, Some(vec!["mock/*"])), "best", not_allowed("best")),
            (
                key(None, Some(vec!["best"])),
                "best",
                ok(&["mock/fast-1", "claude/sonnet"]),
            ),
            // The group's providers narrow an alias, and refuse a model wholly outside them.
            (key(Some(7), None), "best", ok(&["claude/sonnet"])),
            (
                key(Some(7), None),
                "mock/fast-1",
                not_allowed("mock/fast-1"),
            ),
            // A group that no longer exists denies everything (fail closed).
            (
                key(Some(99), None),
                "mock/fast-1",
                not_allowed("mock/fast-1"),
            ),
            // An unknown name is unknown whatever the policy.
            (key(Some(7), Some(vec![])), "nope", not_found("nope")),
        ];
        for (key, model, want) in cases {
            assert_eq!(
                names(plan(&routes, &key, model)),
                want,
                "{model} for group {:?}, models {:?}",
                key.group_id,
                key.allowed_models
            );
        }
    }
}
