//! Local state under `~/.tokengate/` (`$HOME`, or `TOKENGATE_CONFIG_DIR` instead of the
//! whole directory): `credentials.json` (the device-flow tokens) and `last_key.txt` (the
//! most recently created raw API key). Both are written atomically with mode 0600 in a 0700
//! directory. A lock file serialises token refreshes between concurrent CLI processes,
//! since refresh tokens rotate and presenting a rotated one revokes the whole family.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// Tokens from the device flow, and where to refresh them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credentials {
    /// The API URL these tokens belong to.
    pub api_url: String,
    pub client_id: String,
    pub token_endpoint: String,
    pub resource: String,
    pub access_token: String,
    pub refresh_token: String,
    #[serde(default)]
    pub scope: String,
    /// Unix seconds when the access token expires.
    pub expires_at: i64,
}

/// The CLI's directory and the files in it.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> CliError {
    CliError::user(format!("cannot {what} {}: {e}", path.display()))
}

impl Store {
    /// `TOKENGATE_CONFIG_DIR`, else `$HOME/.tokengate`.
    pub fn from_env() -> Result<Self, CliError> {
        if let Some(d) = std::env::var_os("TOKENGATE_CONFIG_DIR").filter(|d| !d.is_empty()) {
            return Ok(Store {
                dir: PathBuf::from(d),
            });
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var_os("USERPROFILE").filter(|h| !h.is_empty()))
            .ok_or_else(|| {
                CliError::user_hint(
                    "cannot find the home directory (HOME is not set)",
                    "Set HOME, or TOKENGATE_CONFIG_DIR to the directory for tokengate's files.",
                )
            })?;
        Ok(Store {
            dir: PathBuf::from(home).join(".tokengate"),
        })
    }

    pub fn credentials_path(&self) -> PathBuf {
        self.dir.join("credentials.json")
    }

    pub fn last_key_path(&self) -> PathBuf {
        self.dir.join("last_key.txt")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("credentials.lock")
    }

    fn ensure_dir(&self) -> Result<(), CliError> {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(&self.dir)
            .map_err(|e| io_error("create", &self.dir, &e))
    }

    /// Writes `contents` to `path` through a temporary file (mode 0600) and a rename, so a
    /// reader never sees half a file and an older file's wider mode is not kept.
    fn write_private(&self, path: &Path, contents: &[u8]) -> Result<(), CliError> {
        self.ensure_dir()?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let result = opts.open(&tmp).and_then(|mut f| {
            f.write_all(contents)?;
            f.sync_all()
        });
        if let Err(e) = result.and_then(|()| fs::rename(&tmp, path)) {
            let _ = fs::remove_file(&tmp);
            return Err(io_error("write", path, &e));
        }
        Ok(())
    }

    /// The stored credentials, if any.
    pub fn load_credentials(&self) -> Result<Option<Credentials>, CliError> {
        let path = self.credentials_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path, &e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            CliError::user_hint(
                format!("{} is not valid: {e}", path.display()),
                "Run `tokengate login` to sign in again.",
            )
        })
    }

    pub fn save_credentials(&self, c: &Credentials) -> Result<(), CliError> {
        let text = serde_json::to_vec_pretty(c)
            .map_err(|e| CliError::user(format!("cannot encode credentials: {e}")))?;
        self.write_private(&self.credentials_path(), &text)
    }

    /// Deletes the credentials; whether there were any.
    pub fn delete_credentials(&self) -> Result<bool, CliError> {
        let path = self.credentials_path();
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("delete", &path, &e)),
        }
    }

    /// The cached raw API key, if any.
    pub fn load_last_key(&self) -> Result<Option<String>, CliError> {
        let path = self.last_key_path();
        match fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t.trim().to_string()).filter(|k| !k.is_empty())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read", &path, &e)),
        }
    }

    pub fn save_last_key(&self, raw: &str) -> Result<(), CliError> {
        self.write_private(&self.last_key_path(), format!("{raw}\n").as_bytes())
    }

    /// Takes the refresh lock, waiting up to ~10 s for another process to release it; a
    /// lock older than 30 s is left over from a crash and broken.
    pub async fn lock(&self) -> Result<Lock, CliError> {
        self.ensure_dir()?;
        let path = self.lock_path();
        for _ in 0..100 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return Ok(Lock { path }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .is_some_and(|age| age > Duration::from_secs(30));
                    if stale {
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(io_error("create", &path, &e)),
            }
        }
        Err(CliError::user(format!(
            "another tokengate process holds {}; if none is running, delete it",
            path.display()
        )))
    }
}

/// The refresh lock; released when dropped.
pub struct Lock {
    path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store(name: &str) -> Store {
        let dir =
            std::env::temp_dir().join(format!("tokengate-cli-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Store {
            dir: dir.join("nested"),
        }
    }

    #[test]
    fn files_are_private_and_round_trip() {
        let s = temp_store("roundtrip");
        assert_eq!(s.load_credentials().unwrap(), None);
        assert_eq!(s.load_last_key().unwrap(), None);
        let c = Credentials {
            api_url: "http://127.0.0.1:3000".into(),
            client_id: "tokengate-cli".into(),
            token_endpoint: "http://127.0.0.1:3000/api/v1/auth/token".into(),
            resource: "http://127.0.0.1:3000/api/v1".into(),
            access_token: "a".into(),
            refresh_token: "r".into(),
            scope: "account".into(),
            expires_at: 1,
        };
        s.save_credentials(&c).unwrap();
        s.save_credentials(&c).unwrap();
        assert_eq!(s.load_credentials().unwrap(), Some(c));
        s.save_last_key("sk-tg-x").unwrap();
        assert_eq!(s.load_last_key().unwrap().as_deref(), Some("sk-tg-x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in [s.credentials_path(), s.last_key_path()] {
                let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", p.display());
            }
            let mode = fs::metadata(&s.dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
        assert!(s.delete_credentials().unwrap());
        assert!(!s.delete_credentials().unwrap());
        let _ = fs::remove_dir_all(s.dir.parent().unwrap());
    }
}
