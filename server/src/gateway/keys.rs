//! The in-memory API-key table: keyed hash → key record. Authentication on `/v1` is one
//! hash and one map lookup, no SQL. Local changes (create, revoke) apply at once; changes
//! made elsewhere (other instances, `tokengate-server admin …`) arrive through
//! [`super::Gateway::refresh_changes`], keyed on database-assigned change numbers.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use tokengate_core::keys::{self, ApiKey, KeyHash};
use tokengate_core::{Db, Error, now_ms};

/// Active keys by hash (inactive ones are kept out: absence means 401), and each cached
/// key's hash by id, so a rotated key's old hash is dropped when its new record arrives.
#[derive(Default)]
pub struct KeyCache {
    by_hash: RwLock<HashMap<KeyHash, Arc<ApiKey>>>,
    hash_of: RwLock<HashMap<i64, KeyHash>>,
}

fn parse_hash(hex_hash: &str) -> Option<KeyHash> {
    let bytes = hex::decode(hex_hash).ok()?;
    bytes.try_into().ok()
}

impl KeyCache {
    /// Replaces or removes one key according to its current record.
    pub fn apply(&self, key: ApiKey) {
        let Some(h) = parse_hash(&key.key_hash) else {
            return;
        };
        let mut map = self.by_hash.write();
        let mut ids = self.hash_of.write();
        if let Some(old) = ids.remove(&key.id) {
            map.remove(&old);
        }
        if key.status == keys::KeyStatus::Active {
            ids.insert(key.id, h);
            map.insert(h, Arc::new(key));
        } else {
            map.remove(&h);
        }
    }

    /// Loads the keys whose change number is above `version` (every key for `-1`).
    pub async fn refresh(&self, db: &Db, version: i64) -> Result<usize, Error> {
        let changed = keys::changed_after(db, version).await?;
        let n = changed.len();
        for k in changed {
            self.apply(k);
        }
        Ok(n)
    }

    /// The usable key for a raw secret, if any.
    pub fn authenticate(&self, secret: &[u8], raw: &str) -> Option<Arc<ApiKey>> {
        if !keys::well_formed(raw) {
            return None;
        }
        let h = keys::hash(secret, raw);
        let key = self.by_hash.read().get(&h).cloned()?;
        key.usable_at(now_ms()).then_some(key)
    }
}
