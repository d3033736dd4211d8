//! The routing table: an immutable snapshot of models, aliases and provider adapters built
//! from the catalog and swapped atomically on change, so resolving a model name on the hot
//! path is a hash lookup. Aliases expand to their targets, priority tier by tier, weighted
//! random order within a tier.

use std::collections::HashMap;
use std::sync::Arc;

use rand::Rng;
use tokengate_core::catalog::{Catalog, KeyGroup, Model, ProviderKind};
use tokengate_core::keys::ApiKey;

use super::providers::anthropic::{self, AnthropicAdapter};
use super::providers::http::UpstreamLimits;
use super::providers::{Adapter, mock::MockAdapter, openai::OpenAiAdapter};
use crate::config::Secret;

/// One servable model with the adapter of its provider.
pub struct Target {
    pub model: Model,
    pub provider: String,
    pub adapter: Arc<Adapter>,
}

/// Targets of one priority tier, with their weights.
type Tier = Vec<(Arc<Target>, i64)>;

/// An alias's targets by priority tier (lowest first), each with its weight.
pub struct AliasRoute {
    pub tiers: Vec<Tier>,
}

/// What `GET /v1/models` lists.
#[derive(Debug, Clone)]
pub struct Listing {
    pub id: String,
    pub created_ms: i64,
    pub owned_by: String,
    pub complexity_tier: String,
    pub input_per_m: i64,
    pub output_per_m: i64,
    /// Providers that can serve it.
    pub providers: Vec<String>,
}

/// The whole routing snapshot.
#[derive(Default)]
pub struct Routes {
    models: HashMap<String, Arc<Target>>,
    aliases: HashMap<String, AliasRoute>,
    groups: HashMap<i64, KeyGroup>,
    /// The adapter of each enabled provider, by provider name.
    providers: HashMap<String, Arc<Adapter>>,
    pub listing: Vec<Listing>,
}

/// Inputs for building adapters.
pub struct AdapterEnv<'a> {
    pub client: &'a reqwest::Client,
    pub limits: UpstreamLimits,
    pub provider_keys: &'a HashMap<String, Secret>,
}

impl Routes {
    /// The name of a key group.
    pub fn group_name(&self, id: i64) -> Option<String> {
        self.groups.get(&id).map(|g| g.name.clone())
    }

    /// The adapter of an enabled provider.
    pub fn provider(&self, name: &str) -> Option<Arc<Adapter>> {
        self.providers.get(name).cloned()
    }

    /// Builds the snapshot; disabled providers, models and aliases are left out.
    pub fn build(catalog: &Catalog, env: &AdapterEnv<'_>) -> Routes {
        let mut adapters: HashMap<i64, (String, Arc<Adapter>)> = HashMap::new();
        for p in catalog.providers.iter().filter(|p| p.enabled) {
            let adapter = match p.kind {
                ProviderKind::Mock => Adapter::Mock(MockAdapter::from_config(&p.config)),
                ProviderKind::OpenAi => Adapter::OpenAi(OpenAiAdapter {
                    client: env.client.clone(),
                    base_url: p.base_url.clone().unwrap_or_default(),
                    api_key: env.provider_keys.get(&p.name).cloned(),
                    limits: env.limits,
                }),
                ProviderKind::Anthropic => Adapter::Anthropic(AnthropicAdapter {
                    client: env.client.clone(),
                    base_url: p
                        .base_url
                        .clone()
                        .unwrap_or_else(|| anthropic::DEFAULT_BASE_URL.to_string()),
                    api_key: env.provider_keys.get(&p.name).cloned(),
                    limits: env.limits,
                }),
            };
            adapters.insert(p.id, (p.name.clone(), Arc::new(adapter)));
        }
        let mut routes = Routes {
            providers: adapters
                .values()
                .map(|(name, a)| (name.clone(), a.clone()))
                .collect(),
            ..Routes::default()
        };
        let mut by_id: HashMap<i64, Arc<Target>> = HashMap::new();
        for m in catalog.models.iter().filter(|m| m.enabled) {
            let Some((provider, adapter)) = adapters.get(&m.provider_id) else {
                continue;
            };
            let t = Arc::new(Target {
                model: m.clone(),
                provider: provider.clone(),
                adapter: adapter.clone(),
            });
            by_id.insert(m.id, t.clone());
            routes.models.insert(m.name.clone(), t);
            routes.listing.push(Listing {
                id: m.name.clone(),
                created_ms: m.created_at,
                owned_by: provider.clone(),
                complexity_tier: m.complexity_tier.clone(),
                input_per_m: m.input_price_nano,
                output_per_m: m.output_price_nano,
                providers: vec![provider.clone()],
            });
        }
        for a in catalog.aliases.iter().filter(|a| a.enabled) {
            let mut tiers: Vec<(i64, Tier)> = Vec::new();
            for t in &a.targets {
                let Some(target) = by_id.get(&t.model_id) else {
                    continue;
                };
                match tiers.iter_mut().find(|(p, _)| *p == t.priority) {
                    Some((_, v)) => v.push((target.clone(), t.weight)),
                    None => tiers.push((t.priority, vec![(target.clone(), t.weight)])),
                }
            }
            if tiers.is_empty() {
                continue;
            }
            tiers.sort_by_key(|(p, _)| *p);
            let first = &tiers[0].1[0].0.model;
            let mut providers: Vec<String> = tiers
                .iter()
                .flat_map(|(_, v)| v.iter().map(|(t, _)| t.provider.clone()))
                .collect();
            providers.sort();
            providers.dedup();
            routes.listing.push(Listing {
                providers,
                id: a.name.clone(),
                created_ms: a.created_at,
                owned_by: "tokengate".into(),
                complexity_tier: a.complexity_tier.clone(),
                input_per_m: first.input_price_nano,
                output_per_m: first.output_price_nano,
            });
            routes.aliases.insert(
                a.name.clone(),
                AliasRoute {
                    tiers: tiers.into_iter().map(|(_, v)| v).collect(),
                },
            );
        }
        routes.groups = catalog
            .key_groups
            .iter()
            .map(|g| (g.id, g.clone()))
            .collect();
        routes
    }

    /// The providers `key` may use (`None` = any), or `Err` when its group is gone
    /// (deny: policies fail closed).
    fn provider_policy<'a>(&'a self, key: &ApiKey) -> Result<Option<&'a [String]>, ()> {
        match key.group_id {
            None => Ok(None),
            Some(g) => self
                .groups
                .get(&g)
                .map(|g| g.allowed_providers.as_deref())
                .ok_or(()),
        }
    }

    /// Whether `key`'s own list and its group's list both admit the name `name`.
    fn name_allowed(&self, key: &ApiKey, name: &str) -> bool {
        let group_ok = match key.group_id {
            None => true,
            Some(g) => self
                .groups
                .get(&g)
                .is_some_and(|g| allowed(g.allowed_models.as_deref(), name)),
        };
        group_ok && allowed(key.allowed_models.as_deref(), name)
    }

    /// The targets `key` may use for `name`, in order, or `None` if its policy (allowed
    /// models and aliases, its group's models and providers) forbids the name.
    pub fn permitted(
        &self,
        key: &ApiKey,
        name: &str,
        candidates: Vec<Arc<Target>>,
    ) -> Option<Vec<Arc<Target>>> {
        if !self.name_allowed(key, name) {
            return None;
        }
        match self.provider_policy(key).ok()? {
            None => Some(candidates),
            Some(list) => {
                let kept: Vec<_> = candidates
                    .into_iter()
                    .filter(|t| list.contains(&t.provider))
                    .collect();
                (!kept.is_empty()).then_some(kept)
            }
        }
    }

    /// Whether `key` may see `entry` in `/v1/models`.
    pub fn lists(&self, key: &ApiKey, entry: &Listing) -> bool {
        self.name_allowed(key, &entry.id)
            && match self.provider_policy(key) {
                Err(()) => false,
                Ok(None) => true,
                Ok(Some(list)) => entry.providers.iter().any(|p| list.contains(p)),
            }
    }

    /// Whether `name` is a model or alias.
    pub fn contains(&self, name: &str) -> bool {
        self.models.contains_key(name) || self.aliases.contains_key(name)
    }

    /// The targets to try for `name`, in order.
    pub fn candidates(&self, name: &str) -> Option<Vec<Arc<Target>>> {
        if let Some(t) = self.models.get(name) {
            return Some(vec![t.clone()]);
        }
        let alias = self.aliases.get(name)?;
        let mut rng = rand::thread_rng();
        let mut out = Vec::new();
        for tier in &alias.tiers {
            let mut pool: Vec<(Arc<Target>, i64)> = tier.clone();
            while !pool.is_empty() {
                let total: i64 = pool.iter().map(|(_, w)| *w).sum();
                let mut pick = rng.gen_range(0..total.max(1));
                let idx = pool
                    .iter()
                    .position(|(_, w)| {
                        if pick < *w {
                            true
                        } else {
                            pick -= *w;
                            false
                        }
                    })
                    .unwrap_or(0);
                out.push(pool.swap_remove(idx).0);
            }
        }
        Some(out)
    }
}

/// Whether a key restricted to `allowed` may use `name` (exact names, or `provider/*`).
pub fn allowed(allowed: Option<&[String]>, name: &str) -> bool {
    let Some(list) = allowed else { return true };
    list.iter().any(|a| {
        a == name
            || a.strip_suffix("/*")
                .is_some_and(|p| name.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_model_policy() {
        assert!(allowed(None, "mock/fast-1"));
        let list = vec!["mock/*".to_string(), "tokengate-fast".to_string()];
        assert!(allowed(Some(&list), "mock/fast-1"));
        assert!(allowed(Some(&list), "tokengate-fast"));
        assert!(!allowed(Some(&list), "openai/gpt-4o"));
        assert!(!allowed(Some(&list), "mockery/x"));
    }

    #[test]
    fn every_provider_kind_gets_its_adapter() {
        let providers = ProviderKind::ALL
            .iter()
            .enumerate()
            .map(|(i, kind)| tokengate_core::catalog::Provider {
                id: i as i64,
                name: kind.to_string(),
                kind: *kind,
                base_url: Some("https://upstream.example".into()),
                api_key_enc: None,
                config: serde_json::json!({}),
                enabled: true,
                created_at: 0,
            })
            .collect();
        let catalog = Catalog {
            providers,
            ..Catalog::default()
        };
        let client = reqwest::Client::new();
        let keys = HashMap::new();
        let routes = Routes::build(
            &catalog,
            &AdapterEnv {
                client: &client,
                limits: UpstreamLimits::default(),
                provider_keys: &keys,
            },
        );
        for kind in ProviderKind::ALL {
            let adapter = routes.provider(kind.as_str()).unwrap();
            assert_eq!(adapter.kind(), *kind);
        }
    }
}
