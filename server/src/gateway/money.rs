//! In-memory money on the hot path: each account's last persisted balance, the debits not
//! yet flushed, and the holds of requests in flight. A request is admitted only if its
//! worst-case cost fits in `balance − pending − held`, so concurrent requests cannot spend
//! money the account does not have. Key spend limits use the same mechanism.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use tokengate_core::accounts::UserStatus;

/// Money state of one account or one key.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Funds {
    /// Persisted balance (account) or persisted spend (key).
    pub persisted: i64,
    /// Settled costs not yet written to the database.
    pub pending: i64,
    /// Worst-case costs of requests in flight.
    pub held: i64,
}

/// Account status and funds.
#[derive(Debug, Default)]
pub struct Account {
    pub active: bool,
    pub funds: Funds,
    /// The epoch of the last flush that changed this account's balance.
    flushed_epoch: u64,
}

/// Spend state of one key.
#[derive(Debug, Default)]
struct KeyFunds {
    funds: Funds,
    /// The epoch of the last flush that changed this key's spend.
    flushed_epoch: u64,
}

/// Why a hold was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    AccountInactive,
    Balance,
    KeyLimit,
}

/// A reservation for one request; settle it with [`Money::settle`].
#[derive(Debug)]
pub struct Hold {
    pub user_id: i64,
    pub key_id: i64,
    pub amount: i64,
    key_limited: bool,
}

/// All accounts' and limited keys' funds.
#[derive(Default)]
pub struct Money {
    accounts: RwLock<HashMap<i64, Arc<Mutex<Account>>>>,
    keys: RwLock<HashMap<i64, Arc<Mutex<KeyFunds>>>>,
    /// Bumped by every flush; a balance refresh read before a flush is discarded.
    epoch: AtomicU64,
}

impl Money {
    fn account(&self, user_id: i64) -> Arc<Mutex<Account>> {
        if let Some(a) = self.accounts.read().get(&user_id) {
            return a.clone();
        }
        self.accounts.write().entry(user_id).or_default().clone()
    }

    fn key(&self, key_id: i64) -> Arc<Mutex<KeyFunds>> {
        if let Some(k) = self.keys.read().get(&key_id) {
            return k.clone();
        }
        self.keys.write().entry(key_id).or_default().clone()
    }

    /// Sets an account's persisted balance and status (load, credit, refresh).
    pub fn set_account(&self, user_id: i64, active: bool, balance: i64) {
        let a = self.account(user_id);
        let mut a = a.lock();
        a.active = active;
        a.funds.persisted = balance;
    }

    /// Sets an account's status only (suspension applies to the very next request).
    pub fn set_active(&self, user_id: i64, active: bool) {
        self.account(user_id).lock().active = active;
    }

    /// Current epoch, to pass back to [`Money::refresh_accounts`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Applies statuses and balances read from the database after [`Money::epoch`]
    /// returned `epoch`. A balance is skipped for an account that a flush changed since
    /// (the row may predate that flush; the flush already set the newer balance), so new
    /// accounts, credits and status changes are never lost to unrelated flushes. Returns
    /// whether every balance was applied.
    pub fn refresh_accounts(&self, epoch: u64, rows: &[(i64, UserStatus, i64)]) -> bool {
        let mut all = true;
        for (id, status, balance) in rows {
            let a = self.account(*id);
            let mut a = a.lock();
            a.active = *status == UserStatus::Active;
            if a.flushed_epoch <= epoch {
                a.funds.persisted = *balance;
            } else {
                all = false;
            }
        }
        all
    }

    /// Whether the account exists and is active.
    pub fn is_active(&self, user_id: i64) -> bool {
        self.accounts
            .read()
            .get(&user_id)
            .is_some_and(|a| a.lock().active)
    }

    /// Sets a key's persisted spend (load and refresh).
    pub fn set_key_spent(&self, key_id: i64, spent: i64) {
        self.key(key_id).lock().funds.persisted = spent;
    }

    /// Applies keys' persisted spend read from the database after [`Money::epoch`]
    /// returned `epoch`, skipping keys a flush changed since (their row may predate it).
    pub fn refresh_keys(&self, epoch: u64, rows: &[(i64, i64)]) {
        for (id, spent) in rows {
            let k = self.key(*id);
            let mut k = k.lock();
            if k.flushed_epoch <= epoch {
                k.funds.persisted = *spent;
            }
        }
    }

    /// Settled costs of a key not yet written to the database.
    pub fn key_pending(&self, key_id: i64) -> i64 {
        self.keys
            .read()
            .get(&key_id)
            .map_or(0, |k| k.lock().funds.pending)
    }

    /// The funds of an account as the gateway sees them now.
    pub fn account_funds(&self, user_id: i64) -> Funds {
        self.account(user_id).lock().funds
    }

    /// Reserves `amount` for a request of `key_id` on `user_id`, checking the account's
    /// available balance and, if given, the key's spend limit.
    pub fn hold(
        &self,
        user_id: i64,
        key_id: i64,
        key_limit: Option<i64>,
        amount: i64,
    ) -> Result<Hold, Refusal> {
        let amount = amount.max(0);
        let account = self.account(user_id);
        let mut a = account.lock();
        if !a.active {
            return Err(Refusal::AccountInactive);
        }
        let available = a.funds.persisted - a.funds.pending - a.funds.held;
        if available <= 0 || available < amount {
            return Err(Refusal::Balance);
        }
        if let Some(limit) = key_limit {
            let key = self.key(key_id);
            let mut k = key.lock();
            let k = &mut k.funds;
            if k.persisted + k.pending + k.held + amount > limit || k.persisted + k.pending >= limit
            {
                return Err(Refusal::KeyLimit);
            }
            k.held += amount;
        }
        a.funds.held += amount;
        Ok(Hold {
            user_id,
            key_id,
            amount,
            key_limited: key_limit.is_some(),
        })
    }

    /// Releases a hold and records the actual cost as pending until flushed.
    pub fn settle(&self, hold: Hold, cost: i64) {
        {
            let account = self.account(hold.user_id);
            let mut a = account.lock();
            a.funds.held -= hold.amount;
            a.funds.pending += cost;
        }
        if hold.key_limited {
            let key = self.key(hold.key_id);
            let mut k = key.lock();
            k.funds.held -= hold.amount;
            k.funds.pending += cost;
        } else if cost != 0 {
            // Track spend of unlimited keys too, so a limit set later starts from the truth.
            self.key(hold.key_id).lock().funds.pending += cost;
        }
    }

    /// After a flush: persisted balances from the database and the costs they include.
    pub fn flushed(
        &self,
        balances: &[(i64, i64)],
        user_costs: &HashMap<i64, i64>,
        key_costs: &HashMap<i64, i64>,
    ) {
        let now = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        for (user_id, cost) in user_costs {
            let account = self.account(*user_id);
            let mut a = account.lock();
            a.flushed_epoch = now;
            a.funds.pending -= cost;
            if let Some((_, b)) = balances.iter().find(|(u, _)| u == user_id) {
                a.funds.persisted = *b;
            } else {
                a.funds.persisted -= cost;
            }
        }
        for (key_id, cost) in key_costs {
            let key = self.key(*key_id);
            let mut k = key.lock();
            k.flushed_epoch = now;
            k.funds.pending -= cost;
            k.funds.persisted += cost;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_never_overspend_and_settle_releases() {
        let m = Money::default();
        m.set_account(1, true, 100);
        let h1 = m.hold(1, 10, None, 60).unwrap();
        assert_eq!(m.hold(1, 10, None, 60).unwrap_err(), Refusal::Balance);
        m.settle(h1, 25);
        assert_eq!(
            m.account_funds(1),
            Funds {
                persisted: 100,
                pending: 25,
                held: 0
            }
        );
        let h2 = m.hold(1, 10, None, 75).unwrap();
        m.settle(h2, 0);
        let users = HashMap::from([(1, 25)]);
        m.flushed(&[(1, 75)], &users, &HashMap::from([(10, 25)]));
        assert_eq!(
            m.account_funds(1),
            Funds {
                persisted: 75,
                pending: 0,
                held: 0
            }
        );
    }

    #[test]
    fn zero_balance_and_inactive_accounts_are_refused() {
        let m = Money::default();
        m.set_account(1, true, 0);
        assert_eq!(m.hold(1, 1, None, 0).unwrap_err(), Refusal::Balance);
        m.set_account(2, false, 1000);
        assert_eq!(m.hold(2, 1, None, 1).unwrap_err(), Refusal::AccountInactive);
        assert_eq!(m.hold(3, 1, None, 1).unwrap_err(), Refusal::AccountInactive);
    }

    #[test]
    fn key_limits_hold_like_balances() {
        let m = Money::default();
        m.set_account(1, true, 1_000);
        m.set_key_spent(7, 40);
        let h = m.hold(1, 7, Some(100), 50).unwrap();
        assert_eq!(m.hold(1, 7, Some(100), 20).unwrap_err(), Refusal::KeyLimit);
        m.settle(h, 10);
        assert!(m.hold(1, 7, Some(100), 20).is_ok());
    }

    #[test]
    fn stale_refresh_is_discarded_after_a_flush() {
        let m = Money::default();
        m.set_account(1, true, 100);
        let h = m.hold(1, 1, None, 10).unwrap();
        m.settle(h, 10);
        let e = m.epoch();
        m.flushed(
            &[(1, 90)],
            &HashMap::from([(1, 10)]),
            &HashMap::from([(1, 10)]),
        );
        assert_eq!(
            m.account_funds(1),
            Funds {
                persisted: 90,
                pending: 0,
                held: 0
            }
        );
        assert!(!m.refresh_accounts(e, &[(1, UserStatus::Active, 100)]));
        assert_eq!(m.account_funds(1).persisted, 90);
        assert!(m.refresh_accounts(m.epoch(), &[(1, UserStatus::Active, 120)]));
        assert_eq!(m.account_funds(1).persisted, 120);
    }

    #[test]
    fn a_flush_does_not_hide_other_accounts_from_a_refresh() {
        let m = Money::default();
        m.set_account(1, true, 100);
        let e = m.epoch();
        // A flush of account 1 lands between reading the epoch and applying the rows.
        m.flushed(&[(1, 90)], &HashMap::from([(1, 0)]), &HashMap::new());
        let applied = m.refresh_accounts(
            e,
            &[
                (1, UserStatus::Active, 100),
                (2, UserStatus::Active, 500),
                (3, UserStatus::Suspended, 7),
            ],
        );
        assert!(!applied);
        assert_eq!(
            m.account_funds(1).persisted,
            90,
            "stale row for the flushed account skipped"
        );
        assert_eq!(
            m.account_funds(2).persisted,
            500,
            "a new account appears at once"
        );
        assert!(m.is_active(2));
        assert!(!m.is_active(3));
    }
}
