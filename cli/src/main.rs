//! `tokengate`, the command-line client of a tokengate server: device-flow login, API keys,
//! balance, usage, models, top-up links, `.env` lines, a test call, request-log export and
//! shell completions, for people and for agents (`--json`). This file parses the command line, resolves the server URL, the API
//! key and the local store, runs the command and turns its outcome into the exit code
//! (0 ok; 1 user error or 4xx; 2 network error; 3 server error, 5xx or device-flow failure).
//! It talks only to the documented HTTP API; no server crate is linked.

mod args;
mod auth;
mod commands;
mod error;
mod export;
mod http;
mod store;
mod ui;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use serde_json::json;

use args::{Cli, Command, KeysCommand, LogsCommand};
use error::CliError;
use http::Http;
use store::Store;
use ui::Out;

/// What every command works with.
pub struct Ctx {
    pub out: Out,
    pub store: Store,
    pub http: Http,
    /// `--key` or `TOKENGATE_API_KEY`.
    pub key: Option<String>,
}

/// A non-empty environment variable.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The server: `--api-url`, `TOKENGATE_API_URL`, the server of the stored credentials, or
/// the default.
fn api_url(cli: &Cli, store: &Store) -> Result<String, CliError> {
    if let Some(u) = cli.api_url.clone().or_else(|| env_var("TOKENGATE_API_URL")) {
        return http::normalize_api_url(&u);
    }
    if let Ok(Some(c)) = store.load_credentials() {
        return Ok(c.api_url);
    }
    Ok(http::DEFAULT_API_URL.to_string())
}

async fn run(cli: Cli, out: Out) -> Result<(), CliError> {
    if let Command::Completions(a) = &cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(a.shell, &mut cmd, "tokengate", &mut std::io::stdout());
        return Ok(());
    }
    let store = Store::from_env()?;
    let http = Http::new(api_url(&cli, &store)?)?;
    let key = cli
        .key
        .clone()
        .filter(|k| !k.trim().is_empty())
        .or_else(|| env_var("TOKENGATE_API_KEY"))
        .map(|k| k.trim().to_string());
    let ctx = Ctx {
        out,
        store,
        http,
        key,
    };
    match &cli.command {
        Command::Login(a) => auth::login(&ctx, a.no_open).await,
        Command::Logout => commands::logout(&ctx).await,
        Command::Whoami => commands::whoami(&ctx).await,
        Command::Keys(KeysCommand::Create(a)) => commands::keys_create(&ctx, a).await,
        Command::Keys(KeysCommand::List) => commands::keys_list(&ctx).await,
        Command::Keys(KeysCommand::Revoke(a)) => commands::keys_revoke(&ctx, a).await,
        Command::Balance => commands::balance(&ctx).await,
        Command::Usage(a) => commands::usage(&ctx, a).await,
        Command::Models => commands::models(&ctx).await,
        Command::Topup(a) => commands::topup(&ctx, a).await,
        Command::Env(a) => commands::env(&ctx, a).await,
        Command::Test(a) => commands::test(&ctx, a).await,
        Command::Logs(LogsCommand::Export(a)) => export::export(&ctx, a).await,
        Command::Completions(_) => Ok(()),
    }
}

/// Whether `--json` or `TOKENGATE_JSON` was asked for, for errors before parsing finished.
fn json_requested() -> bool {
    std::env::args_os().skip(1).any(|a| a == "--json")
        || env_var("TOKENGATE_JSON").is_some_and(|v| {
            !matches!(
                v.to_ascii_lowercase().as_str(),
                "0" | "false" | "no" | "off" | "n" | "f"
            )
        })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if json_requested() {
                let message = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    "a command is required; run `tokengate --help`".to_string()
                } else {
                    // clap's message without the usage and tip lines, on one line.
                    let text = e.render().to_string();
                    let lines: Vec<&str> = text
                        .lines()
                        .map(str::trim)
                        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("tip:"))
                        .filter(|l| !l.is_empty())
                        .collect();
                    lines.join(" ").trim_start_matches("error: ").to_string()
                };
                Out { json: true }.json(&json!({"error": message, "exit_code": 1}));
            } else {
                let _ = e.print();
            }
            return ExitCode::from(1);
        }
    };
    let out = Out { json: cli.json };
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(cli, out)),
        Err(e) => Err(CliError::user(format!("cannot start: {e}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if out.json {
                out.json(&e.to_json());
            } else {
                out.note(&e.to_text());
            }
            ExitCode::from(e.exit_code())
        }
    }
}
