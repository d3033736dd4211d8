//! Live checks of the services a configuration points at, shared by `tokengate-server init`
//! (which tests each answer before writing it) and `tokengate-server doctor`: an upstream
//! provider's model list with its key, an OpenID provider's discovery document, a Redis
//! `PING` over plain TCP, the shape of Stripe secrets, and whether a URL is local. Error
//! texts never contain the secrets they were given.

use std::time::Duration;

use serde::Deserialize;
use tokengate_api::kinds::ProviderKind;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP client for probes: no redirects (a provider or issuer that redirects is
/// misconfigured, and following them would be an SSRF vector), a short timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PROBE_TIMEOUT)
        .build()
        .unwrap_or_default()
}

/// The base URL an adapter uses when none is configured.
pub fn default_base_url(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
        ProviderKind::Anthropic => Some(crate::gateway::providers::anthropic::DEFAULT_BASE_URL),
        ProviderKind::Mock => None,
    }
}

/// Why a provider's model list could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderProblem {
    /// No answer (DNS, connection, TLS, timeout).
    Unreachable(String),
    /// 401/403: the key is missing or wrong.
    KeyRejected(u16),
    /// Another non-2xx status.
    Status(u16),
    /// A 2xx answer that is not a model list.
    NotAList,
}

impl std::fmt::Display for ProviderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderProblem::Unreachable(e) => write!(f, "unreachable ({e})"),
            ProviderProblem::KeyRejected(s) => write!(f, "key rejected (HTTP {s})"),
            ProviderProblem::Status(s) => write!(f, "answered HTTP {s} to GET /models"),
            ProviderProblem::NotAList => f.write_str("GET /models did not answer a model list"),
        }
    }
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

/// The ids `GET {base_url}/models` lists with `key` (OpenAI-compatible: bearer;
/// Anthropic: `x-api-key`). Anthropic pages its list; the first 1000 are read.
pub async fn list_models(
    http: &reqwest::Client,
    kind: ProviderKind,
    base_url: &str,
    key: Option<&str>,
) -> Result<Vec<String>, ProviderProblem> {
    let url = crate::gateway::providers::http::join(base_url, "models");
    let mut req = http.get(&url);
    match kind {
        ProviderKind::Anthropic => {
            req = req
                .query(&[("limit", "1000")])
                .header("anthropic-version", "2023-06-01");
            if let Some(k) = key {
                req = req.header("x-api-key", k);
            }
        }
        ProviderKind::OpenAi | ProviderKind::Mock => {
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
        }
    }
    let resp = req
        .send()
        .await
        .map_err(|e| ProviderProblem::Unreachable(describe(&e)))?;
    let status = resp.status().as_u16();
    if status == 401 || status == 403 {
        return Err(ProviderProblem::KeyRejected(status));
    }
    if !(200..300).contains(&status) {
        return Err(ProviderProblem::Status(status));
    }
    let list: ModelList = resp.json().await.map_err(|_| ProviderProblem::NotAList)?;
    Ok(list.data.into_iter().map(|m| m.id).collect())
}

/// A transport error in a few words, without the URL's query or credentials.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_redirect() {
        "redirected".into()
    } else {
        // The innermost cause: the outer texts repeat the URL.
        let mut cur: &dyn std::error::Error = e;
        while let Some(next) = cur.source() {
            cur = next;
        }
        cur.to_string().chars().take(120).collect()
    }
}

/// The fields of an OpenID discovery document tokengate needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// Fetches and checks `<issuer>/.well-known/openid-configuration`: it must answer 200 with
/// the endpoints sign-in uses, and name the same issuer.
pub async fn oidc_discovery(http: &reqwest::Client, issuer: &str) -> Result<Discovery, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {}", describe(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("{url} answered HTTP {}", resp.status().as_u16()));
    }
    let doc: Discovery = resp
        .json()
        .await
        .map_err(|e| format!("{url} is not a discovery document: {e}"))?;
    if doc.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(format!(
            "{url} names issuer {:?}, not {issuer:?} (set issuer to exactly the provider's)",
            doc.issuer
        ));
    }
    Ok(doc)
}

/// Host, port, optional credentials and database index of a `redis://` URL.
#[derive(Debug, PartialEq, Eq)]
struct RedisTarget {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    db: u32,
}

fn parse_redis_url(url: &str) -> Result<RedisTarget, String> {
    if url.starts_with("rediss://") {
        return Err("rediss:// (TLS) cannot be checked by this probe".into());
    }
    let rest = url
        .strip_prefix("redis://")
        .ok_or("a Redis URL starts with redis://")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (creds, hostport) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    let (user, password) = match creds {
        None => (None, None),
        Some(c) => match c.split_once(':') {
            Some((u, p)) => ((!u.is_empty()).then(|| u.to_string()), Some(p.to_string())),
            None => (None, Some(c.to_string())),
        },
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse::<u16>().map_err(|_| "bad port in the Redis URL")?,
        ),
        _ => (hostport.to_string(), 6379),
    };
    if host.is_empty() {
        return Err("the Redis URL names no host".into());
    }
    let db = match path.split('?').next().unwrap_or("") {
        "" => 0,
        n => n
            .parse()
            .map_err(|_| "bad database index in the Redis URL")?,
    };
    Ok(RedisTarget {
        host,
        port,
        user,
        password,
        db,
    })
}

/// Connects to the Redis of `url`, authenticates if it carries credentials, selects its
/// database and expects `PONG` to a `PING`.
pub async fn redis_ping(url: &str) -> Result<(), String> {
    #[cfg(unix)]
    if let Some(path) = url
        .strip_prefix("unix://")
        .or_else(|| url.strip_prefix("redis+unix://"))
    {
        let path = path.split('?').next().unwrap_or("");
        let t = RedisTarget {
            host: path.to_string(),
            port: 0,
            user: None,
            password: None,
            db: 0,
        };
        let stream = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::UnixStream::connect(path))
            .await
            .map_err(|_| format!("{path}: timed out"))?
            .map_err(|e| format!("cannot connect to {path}: {e}"))?;
        return ping_over(stream, &t, path).await;
    }
    let t = parse_redis_url(url)?;
    let addr = format!("{}:{}", t.host, t.port);
    let stream = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("{addr}: timed out"))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    ping_over(stream, &t, &addr).await
}

async fn ping_over<S>(stream: S, t: &RedisTarget, addr: &str) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let work = async {
        let (read, mut write) = tokio::io::split(stream);
        let mut read = BufReader::new(read);
        let mut commands: Vec<Vec<&str>> = Vec::new();
        match (&t.user, &t.password) {
            (Some(u), Some(p)) => commands.push(vec!["AUTH", u, p]),
            (None, Some(p)) => commands.push(vec!["AUTH", p]),
            _ => {}
        }
        let db = t.db.to_string();
        if t.db != 0 {
            commands.push(vec!["SELECT", &db]);
        }
        commands.push(vec!["PING"]);
        for cmd in commands {
            let mut frame = format!("*{}\r\n", cmd.len());
            for part in &cmd {
                frame.push_str(&format!("${}\r\n{part}\r\n", part.len()));
            }
            write
                .write_all(frame.as_bytes())
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            let mut line = String::new();
            read.read_line(&mut line)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            let line = line.trim_end();
            if let Some(err) = line.strip_prefix('-') {
                // The command name only: an AUTH error must not echo the password.
                return Err(format!("{addr} refused {}: {err}", cmd[0]));
            }
            if line.is_empty() {
                return Err(format!("{addr} closed the connection"));
            }
            if cmd[0] == "PING" && line != "+PONG" {
                return Err(format!("{addr} answered {line:?} to PING, not PONG"));
            }
        }
        Ok(())
    };
    tokio::time::timeout(PROBE_TIMEOUT, work)
        .await
        .map_err(|_| format!("{addr}: timed out"))?
}

/// Whether `key` has the shape of a Stripe secret or restricted API key.
pub fn stripe_secret_key_ok(key: &str) -> bool {
    ["sk_live_", "sk_test_", "rk_live_", "rk_test_"]
        .iter()
        .any(|p| key.starts_with(p) && key.len() > p.len() + 8)
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `secret` has the shape of a Stripe webhook signing secret.
pub fn stripe_webhook_secret_ok(secret: &str) -> bool {
    secret.len() > "whsec_".len() + 8
        && secret.starts_with("whsec_")
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'+' || b == b'/' || b == b'=')
}

/// A URL with the password of its user info replaced by `***`, for printing.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((creds, host)) => match creds.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Whether a URL's host is this machine (`localhost`, a loopback address).
pub fn is_local_url(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        let t = parse_redis_url("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db), ("127.0.0.1", 6380, 2));
        let t = parse_redis_url("redis://:pw@cache").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.password.as_deref(), t.user),
            ("cache", 6379, Some("pw"), None)
        );
        let t = parse_redis_url("redis://u:p@[::1]:7000").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_deref()),
            ("::1", 7000, Some("u"))
        );
        assert!(parse_redis_url("http://x").is_err());
        assert!(parse_redis_url("rediss://x").is_err());
        assert!(parse_redis_url("redis://x:notaport").is_err());
    }

    #[test]
    fn stripe_shapes() {
        assert!(stripe_secret_key_ok("sk_test_51Habcdefghijkl"));
        assert!(stripe_secret_key_ok("rk_live_51Habcdefghijkl"));
        assert!(!stripe_secret_key_ok("pk_test_51Habcdefghijkl"));
        assert!(!stripe_secret_key_ok("sk_test_"));
        assert!(!stripe_secret_key_ok("sk_test_abc def ghi jkl"));
        assert!(stripe_webhook_secret_ok("whsec_abcdefghijklmnop"));
        assert!(!stripe_webhook_secret_ok("sk_test_abcdefghijklmnop"));
        assert!(!stripe_webhook_secret_ok("whsec_"));
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("redis://:pw@h"), "redis://:***@h");
        assert_eq!(redact_url("sqlite://./x.db"), "sqlite://./x.db");
        assert_eq!(redact_url("postgres://h/db?x=a@b"), "postgres://h/db?x=a@b");
    }

    #[test]
    fn local_urls() {
        for u in [
            "http://localhost:3000",
            "http://127.0.0.1:3000/x",
            "http://[::1]:80",
            "http://app.localhost",
            "http://user@127.0.0.2",
        ] {
            assert!(is_local_url(u), "{u}");
        }
        for u in [
            "http://example.com",
            "https://10.0.0.1",
            "http://localhost.example.com",
            "nonsense",
        ] {
            assert!(!is_local_url(u), "{u}");
        }
    }
}
