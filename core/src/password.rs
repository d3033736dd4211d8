//! Password hashing with argon2id (PHC strings). Hashing is CPU-heavy and takes ~19 MiB
//! per hash: async callers use [`hash_async`] and [`verify_async`], which run on a blocking
//! thread behind one process-wide semaphore (as many permits as CPUs, at most 8), so a
//! flood of sign-ups or sign-ins queues instead of hashing hundreds of passwords at once
//! and memory stays bounded.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::Rng;

use crate::Error;

/// Hashes a password into a PHC string.
pub fn hash(password: &str) -> Result<String, Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Invalid(format!("cannot hash password: {e}")))
}

/// Whether `password` matches the PHC string `stored`.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Hashes running at once, process-wide.
fn permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(n.clamp(1, 8))
    });
    &PERMITS
}

/// Runs `f` on a blocking thread once a hashing permit is free.
async fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    let _permit = permits()
        .acquire()
        .await
        .map_err(|_| Error::Invalid("password hashing is shut down".into()))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Invalid(format!("password hashing failed: {e}")))
}

/// [`hash`], off the async runtime and behind the hashing semaphore.
pub async fn hash_async(password: String) -> Result<String, Error> {
    bounded(move || hash(&password)).await?
}

/// [`verify`] against `stored`, or against [`dummy_hash`] (and `false`) when there is no
/// stored hash, so unknown accounts take as long as known ones; off the async runtime and
/// behind the hashing semaphore.
pub async fn verify_async(password: String, stored: Option<String>) -> bool {
    bounded(move || match stored {
        Some(h) => verify(&password, &h),
        None => {
            verify(&password, dummy_hash());
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// A valid hash of no one's password, to verify against when an account does not exist,
/// so that sign-in takes as long for unknown emails as for known ones.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| hash(&generate()).unwrap_or_default());
    &DUMMY
}

/// A random password of 20 characters from an unambiguous alphabet.
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let p = generate();
        assert_eq!(p.len(), 20);
        let h = hash(&p).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&p, &h));
        assert!(!verify("wrong", &h));
        assert!(!verify(&p, "not a hash"));
        assert_ne!(h, hash(&p).unwrap());
    }
}
