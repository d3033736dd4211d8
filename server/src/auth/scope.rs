//! Access-token scopes and which `/api/v1` route needs which: `account` (profile, balance,
//! usage, sessions), `keys` (API keys), `billing` (top-ups, payments, statements, request
//! logs) and `admin` (everything under `/admin`, and then only for a user whose role is
//! admin). A portal session holds every scope; a bearer token holds what its grant says.
//! Routes are classified by their route template; an unclassified route refuses every
//! bearer token, and a test checks that every documented route is classified.

/// Every scope: what the portal's in-process token and `tokengate-server admin token`
/// carry (admin routes still need role admin).
pub const ALL: &str = "account keys billing admin";

/// A scope a bearer token may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Account,
    Keys,
    Billing,
    Admin,
}

impl Scope {
    /// The scope's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Keys => "keys",
            Scope::Billing => "billing",
            Scope::Admin => "admin",
        }
    }
}

/// What a route asks of a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone may call it (discovery, the device-flow endpoints, webhooks).
    Public,
    /// A token carrying this scope.
    Scope(Scope),
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('.'))
}

/// The need of the route with this template (as axum matched it, with or without the
/// `/api/v1` prefix); `None` for a route nobody classified, which no token may call.
pub fn need(template: &str) -> Option<Need> {
    let p = template.strip_prefix("/api/v1").unwrap_or(template);
    let need = if under(p, "/admin") {
        Need::Scope(Scope::Admin)
    } else if under(p, "/me/keys") {
        Need::Scope(Scope::Keys)
    } else if p == "/topup" || under(p, "/me/billing") || under(p, "/me/request-logs") {
        Need::Scope(Scope::Billing)
    } else if under(p, "/me") || p == "/balance" || p == "/auth/device/request" {
        Need::Scope(Scope::Account)
    } else if matches!(p, "/auth/discovery" | "/auth/device/code" | "/auth/token")
        || under(p, "/webhooks")
    {
        Need::Public
    } else {
        return None;
    };
    Some(need)
}

/// Whether a space-separated scope string grants `scope`.
pub fn grants(scopes: &str, scope: Scope) -> bool {
    scopes.split_whitespace().any(|s| s == scope.as_str())
}

/// `scopes` without `admin` (for a grant whose approver did not grant it).
pub fn without_admin(scopes: &str) -> String {
    scopes
        .split_whitespace()
        .filter(|s| *s != Scope::Admin.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified() {
        let s = |x| Some(Need::Scope(x));
        assert_eq!(need("/api/v1/admin/users/{id}/credit"), s(Scope::Admin));
        assert_eq!(need("/admin/providers"), s(Scope::Admin));
        assert_eq!(need("/api/v1/me/keys/{id}/rotate"), s(Scope::Keys));
        assert_eq!(need("/me/keys/new"), s(Scope::Keys));
        assert_eq!(need("/api/v1/topup"), s(Scope::Billing));
        assert_eq!(need("/me/billing/topup"), s(Scope::Billing));
        assert_eq!(need("/api/v1/me/request-logs.csv"), s(Scope::Billing));
        assert_eq!(need("/api/v1/me/request-logs/{id}"), s(Scope::Billing));
        assert_eq!(need("/api/v1/me"), s(Scope::Account));
        assert_eq!(need("/api/v1/me/usage/daily"), s(Scope::Account));
        assert_eq!(need("/api/v1/balance"), s(Scope::Account));
        assert_eq!(need("/api/v1/auth/device/request"), s(Scope::Account));
        assert_eq!(need("/api/v1/auth/token"), Some(Need::Public));
        // Look-alikes are not swallowed by a prefix.
        assert_eq!(need("/api/v1/administrators"), None);
        assert_eq!(need("/api/v1/me-too"), None);
        assert_eq!(need("/api/v1/me/keysmith"), s(Scope::Account));
        assert_eq!(need("/nothing"), None);
    }

    #[test]
    fn every_documented_api_route_is_classified() {
        let (_, doc) = crate::api::route_table().split_for_parts();
        let paths: Vec<String> = doc.paths.paths.keys().cloned().collect();
        assert!(paths.len() > 20, "{paths:?}");
        for p in paths {
            assert!(need(&p).is_some(), "route {p} needs a scope classification");
        }
    }

    #[test]
    fn scope_strings() {
        assert!(grants("account keys", Scope::Keys));
        assert!(!grants("account keysx", Scope::Keys));
        assert!(!grants("", Scope::Account));
        assert_eq!(
            without_admin("account admin keys offline_access"),
            "account keys offline_access"
        );
    }
}
