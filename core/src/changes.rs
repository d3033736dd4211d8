//! Database-assigned change numbers (cluster control plane). Every change to what the
//! instances cache — keys, an account's status, role or sign-out epoch, and the catalog
//! (providers, models, aliases and their targets, key groups) — takes the next number of
//! one counter in the transaction that makes it (triggers of migration 0006, so changes
//! written by any instance or by `tokengate-server admin …` are numbered alike). Taking
//! the number locks the counter until commit, so numbers become visible in commit order:
//! an instance that has applied every change up to N misses none below it. Instances keep
//! the highest number they applied and read only what is newer; on PostgreSQL each
//! number is also announced with `NOTIFY tokengate_changes` at commit.

use crate::{Db, Error};

/// The channel PostgreSQL notifies on at the commit of every change.
pub const CHANNEL: &str = "tokengate_changes";

/// The counter's state: the last number assigned, and the number of the last catalog
/// change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct ChangeState {
    pub version: i64,
    pub catalog_version: i64,
}

impl ChangeState {
    /// Before anything was read: every row counts as changed.
    pub const NOTHING_SEEN: ChangeState = ChangeState {
        version: -1,
        catalog_version: -1,
    };
}

/// The committed state of the counter.
pub async fn current(db: &Db) -> Result<ChangeState, Error> {
    Ok(sqlx::query_as::<_, ChangeState>(
        "SELECT version, catalog_version FROM change_state WHERE id = 1",
    )
    .fetch_one(db.pool())
    .await?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::accounts::{self, Entry, EntryKind, Role, UserStatus};
    use crate::keys::{self, NewKey};

    #[tokio::test]
    async fn changes_are_numbered_by_the_database_and_usage_is_not_a_change() {
        let path = std::env::temp_dir().join(format!(
            "tokengate-changes-{}-{}.db",
            std::process::id(),
            crate::now_ms()
        ));
        let db = Db::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let start = current(&db).await.unwrap();
        let user = accounts::create_user(&db, "u@example.com", "U", None, Role::User)
            .await
            .unwrap();
        let (key, _) = keys::create(
            &db,
            b"secret",
            user.id,
            &NewKey {
                name: "k".into(),
                ..NewKey::default()
            },
        )
        .await
        .unwrap();
        let after_create = current(&db).await.unwrap();
        assert!(
            after_create.version >= start.version + 2,
            "{after_create:?}"
        );
        assert_eq!(after_create.catalog_version, start.catalog_version);
        let ids: Vec<i64> = keys::changed_after(&db, start.version)
            .await
            .unwrap()
            .iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(ids, [key.id]);
        assert!(
            keys::changed_after(&db, after_create.version)
                .await
                .unwrap()
                .is_empty()
        );

        // A credit and a usage-style key update move balances and spend, not change numbers.
        accounts::apply_entry(
            &db,
            Entry {
                user_id: user.id,
                kind: EntryKind::Promo,
                amount_nano: 5,
                reference: None,
                note: None,
                created_by: None,
                refuse_negative: false,
            },
        )
        .await
        .unwrap();
        sqlx::query("UPDATE api_keys SET spent_nano = spent_nano + 1, last_used_at = 1")
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(current(&db).await.unwrap(), after_create);

        // A revocation and a suspension are changes, each newer than the last.
        keys::revoke(&db, user.id, key.id).await.unwrap();
        let revoked = keys::changed_after(&db, after_create.version)
            .await
            .unwrap();
        assert_eq!(revoked.len(), 1);
        assert_eq!(revoked[0].status, keys::KeyStatus::Revoked);
        let before_suspend = current(&db).await.unwrap();
        accounts::set_status(&db, user.id, UserStatus::Suspended)
            .await
            .unwrap();
        let changed = accounts::changed_after(&db, before_suspend.version)
            .await
            .unwrap();
        assert_eq!(changed, [(user.id, UserStatus::Suspended, 5)]);

        // Any catalog write moves the catalog number too.
        crate::catalog::upsert_key_group(&db, "team", None, None)
            .await
            .unwrap();
        let after_group = current(&db).await.unwrap();
        assert!(after_group.catalog_version > before_suspend.version);
        assert_eq!(after_group.catalog_version, after_group.version);
        db.close().await;
        let _ = std::fs::remove_file(&path);
    }
}
