//! The secrets file `tokengate-server init` writes next to `tokengate.toml` (`KEY=value`
//! lines, mode 0600, readable by `sh` (`set -a; . ./tokengate.env`), systemd's
//! `EnvironmentFile=` and `--env-file`), and how the server reads it: variables already in
//! the process environment win over the file; provider keys named by `api_key_env` and
//! OpenID client secrets named by `client_secret_env` are then filled into the config from
//! either source, so the TOML itself never holds a secret.

use std::collections::HashMap;
use std::path::Path;

use crate::config::{Config, ConfigError, Secret};

/// The variables of an env file, by name.
pub type EnvMap = HashMap<String, String>;

/// Reads an env file: `NAME=value`, optionally `export NAME=value`; the value bare, in
/// single quotes (literal) or in double quotes (`\"`, `\\`, `\$` and `` \` `` escaped);
/// blank lines and `#` comments skipped. The error names the line, never its value.
pub fn parse(text: &str) -> Result<EnvMap, String> {
    let mut map = EnvMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected NAME=value", i + 1))?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("line {}: {name:?} is not a variable name", i + 1));
        }
        let value = unquote(value.trim())
            .ok_or_else(|| format!("line {}: the value of {name} has an unmatched quote", i + 1))?;
        map.insert(name.to_string(), value);
    }
    Ok(map)
}

fn unquote(v: &str) -> Option<String> {
    if let Some(inner) = v.strip_prefix('\'') {
        return inner.strip_suffix('\'').map(str::to_string);
    }
    if let Some(inner) = v.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some(n @ ('"' | '\\' | '$' | '`')) => out.push(n),
                    Some(n) => {
                        out.push('\\');
                        out.push(n);
                    }
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        return Some(out);
    }
    Some(v.to_string())
}

/// One `NAME=value` line that `sh`, systemd and [`parse`] all read back as `value`.
pub fn line(name: &str, value: &str) -> String {
    let bare = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:/@%+,=".contains(&b));
    if bare {
        format!("{name}={value}\n")
    } else {
        let mut q = String::with_capacity(value.len() + 2);
        for c in value.chars() {
            if matches!(c, '"' | '\\' | '$' | '`') {
                q.push('\\');
            }
            q.push(c);
        }
        format!("{name}=\"{q}\"\n")
    }
}

/// Reads the env file at `path`.
pub fn read(path: &Path) -> Result<EnvMap, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    parse(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
}

/// A lookup of the process environment first, then `file`.
pub fn lookup(file: &EnvMap) -> impl Fn(&str) -> Option<String> + '_ {
    move |k| std::env::var(k).ok().or_else(|| file.get(k).cloned())
}

/// Fills provider keys (`api_key_env`) and OpenID client secrets (`client_secret_env`)
/// from `env`. A variable that is named but not set is an error naming it.
pub fn resolve_secrets(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for p in &mut config.providers {
        if let (None, Some(var)) = (&p.api_key, &p.api_key_env) {
            match env(var) {
                Some(v) => p.api_key = Some(Secret::new(v)),
                None => {
                    return Err(ConfigError(format!(
                        "provider {}: environment variable {var} is not set",
                        p.name
                    )));
                }
            }
        }
    }
    for o in &mut config.oidc {
        if let (None, Some(var)) = (&o.client_secret, &o.client_secret_env) {
            match env(var) {
                Some(v) => o.client_secret = Some(Secret::new(v)),
                None => {
                    return Err(ConfigError(format!(
                        "oidc {}: environment variable {var} is not set",
                        o.id
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Loads the configuration as `serve` does: the file, then `TOKENGATE_*` variables from the
/// process environment and the env file, then the secrets they name.
pub fn load_config(
    config_file: Option<&Path>,
    env_file: Option<&Path>,
) -> Result<Config, ConfigError> {
    let file_env = match env_file {
        Some(p) => read(p)?,
        None => EnvMap::new(),
    };
    let env = lookup(&file_env);
    let mut config = Config::load(config_file, &env)?;
    resolve_secrets(&mut config, &env)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for v in [
            "sk-abc_123",
            "postgres://u:p@h:5432/db?sslmode=require&x=1",
            "has space",
            "quote\" and $dollar `tick` \\ back",
            "single ' quote",
            "",
        ] {
            let text = line("X", v);
            let map = parse(&text).unwrap();
            assert_eq!(map["X"], v, "{text}");
        }
        assert_eq!(line("A", "plain-1.2"), "A=plain-1.2\n");
    }

    #[test]
    fn parses_comments_export_and_quotes() {
        let m = parse("# c\n\nexport A=1\nB='x y'\nC=\"q\\\"\"\n").unwrap();
        assert_eq!(
            (m["A"].as_str(), m["B"].as_str(), m["C"].as_str()),
            ("1", "x y", "q\"")
        );
        let err = parse("A=1\nnot a line\n").unwrap_err();
        assert!(err.starts_with("line 2"), "{err}");
        let err = parse("S='secret-value\n").unwrap_err();
        assert!(!err.contains("secret-value"), "{err}");
    }
}
