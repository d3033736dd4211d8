//! Sealing of stored secrets (provider keys) with a key derived from the server secret:
//! ChaCha20-Poly1305 with a random nonce, stored as `v1:<base64(nonce ‖ ciphertext)>`. A
//! sealed value cannot be read or altered without the server secret; changing the secret
//! makes stored provider keys unreadable (they must be set again).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A 32-byte key for one purpose (`label`), derived from the server secret with
/// HMAC-SHA-256, so each use of the secret gets an independent key.
pub fn derive_key(secret: &[u8], label: &str) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return [0; 32];
    };
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

fn cipher(secret: &[u8]) -> ChaCha20Poly1305 {
    let key = derive_key(secret, "tokengate sealed secrets v1");
    ChaCha20Poly1305::new(Key::from_slice(&key))
}

/// Seals `plain` under `secret`.
pub fn seal(secret: &[u8], plain: &str) -> String {
    let nonce: [u8; 12] = rand::random();
    let ct = cipher(secret)
        .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    format!("v1:{}", STANDARD.encode(out))
}

/// Opens a value sealed by [`seal`]; `None` if it was not sealed under `secret` or was
/// altered.
pub fn open(secret: &[u8], sealed: &str) -> Option<String> {
    let raw = STANDARD.decode(sealed.strip_prefix("v1:")?).ok()?;
    if raw.len() < 12 + 16 {
        return None;
    }
    let (nonce, ct) = raw.split_at(12);
    let plain = cipher(secret).decrypt(Nonce::from_slice(nonce), ct).ok()?;
    String::from_utf8(plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let s = b"0123456789abcdef0123456789abcdef";
        let sealed = seal(s, "sk-provider-secret");
        assert!(!sealed.contains("sk-provider"));
        assert_ne!(sealed, seal(s, "sk-provider-secret"), "nonces differ");
        assert_eq!(open(s, &sealed).as_deref(), Some("sk-provider-secret"));
        assert_eq!(open(b"another-secret-another-secret-xx", &sealed), None);
        let mut bytes = STANDARD.decode(&sealed[3..]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(open(s, &format!("v1:{}", STANDARD.encode(bytes))), None);
        assert_eq!(open(s, "plain"), None);
    }
}
