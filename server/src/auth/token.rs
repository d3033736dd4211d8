//! Access tokens: compact JWTs (HS256) signed with a key derived from the server secret,
//! carrying the user id, the audience (the API resource URL), issue and expiry times and
//! a unique id. Verification checks the signature in constant time, the algorithm, the
//! audience and the expiry; the user's current role and status are looked up per request,
//! so a suspension or demotion applies at once.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::seal::derive_key;

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id, as a string (JWT convention).
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// Space-separated scopes.
    #[serde(default)]
    pub scope: String,
    /// The user's auth epoch at issue; "sign out everywhere" bumps it.
    #[serde(default)]
    pub ep: i64,
}

impl Claims {
    pub fn user_id(&self) -> Option<i64> {
        self.sub.parse().ok()
    }
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    let key = derive_key(secret, "tokengate access tokens v1");
    // HMAC accepts keys of any length.
    <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap_or_else(|_| unreachable!())
}

/// Signs an access token for `user_id`, valid for `ttl_secs` from `now_secs`.
pub fn mint(
    secret: &[u8],
    user_id: i64,
    epoch: i64,
    audience: &str,
    scope: &str,
    now_secs: i64,
    ttl_secs: i64,
) -> String {
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = Claims {
        sub: user_id.to_string(),
        aud: audience.to_string(),
        iat: now_secs,
        exp: now_secs + ttl_secs,
        jti: hex::encode(rand::random::<[u8; 16]>()),
        scope: scope.to_string(),
        ep: epoch,
    };
    let payload = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    let sig = B64.encode(m.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Malformed,
    Signature,
    Audience,
    Expired,
}

/// Verifies `token` for `audience` at `now_secs`.
pub fn verify(
    secret: &[u8],
    token: &str,
    audience: &str,
    now_secs: i64,
) -> Result<Claims, Invalid> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid::Malformed);
    };
    let header: serde_json::Value = B64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(Invalid::Malformed)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(Invalid::Malformed);
    }
    let sig = B64.decode(s).map_err(|_| Invalid::Malformed)?;
    let mut m = mac(secret);
    m.update(h.as_bytes());
    m.update(b".");
    m.update(p.as_bytes());
    m.verify_slice(&sig).map_err(|_| Invalid::Signature)?;
    let claims: Claims = B64
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(Invalid::Malformed)?;
    if claims.aud != audience {
        return Err(Invalid::Audience);
    }
    if claims.exp <= now_secs {
        return Err(Invalid::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn mint_and_verify() {
        let t = mint(S, 42, 0, "http://x/api", "account", 1000, 3600);
        let c = verify(S, &t, "http://x/api", 1001).unwrap();
        assert_eq!(c.user_id(), Some(42));
        assert_eq!(c.exp, 4600);
        assert_eq!(
            verify(S, &t, "http://other/api", 1001),
            Err(Invalid::Audience)
        );
        assert_eq!(verify(S, &t, "http://x/api", 4600), Err(Invalid::Expired));
        assert_eq!(
            verify(
                b"another-secret-another-secret-xx",
                &t,
                "http://x/api",
                1001
            ),
            Err(Invalid::Signature)
        );
    }

    #[test]
    fn tampering_and_alg_none_are_refused() {
        let t = mint(S, 1, 0, "a", "", 0, 100);
        let parts: Vec<&str> = t.split('.').collect();
        let forged_payload = B64.encode(br#"{"sub":"2","aud":"a","iat":0,"exp":100,"jti":"x"}"#);
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(verify(S, &forged, "a", 1), Err(Invalid::Signature));
        let none = format!("{}.{}.", B64.encode(br#"{"alg":"none"}"#), parts[1]);
        assert_eq!(verify(S, &none, "a", 1), Err(Invalid::Malformed));
        assert_eq!(verify(S, "garbage", "a", 1), Err(Invalid::Malformed));
    }
}
