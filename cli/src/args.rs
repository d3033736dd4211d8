//! The command line: global flags (`--json`/`TOKENGATE_JSON`, `--api-url`/
//! `TOKENGATE_API_URL`, `--key`/`TOKENGATE_API_KEY`), every command and its options, and
//! the examples each command's `--help` shows.

use clap::builder::FalseyValueParser;
use clap::{Args, Parser, Subcommand};

const MAIN_HELP: &str = "\
Examples:
  tokengate login                          # sign in through the browser (device code)
  tokengate keys create --name myapp       # a new API key, shown once
  tokengate env >> .env                    # OPENAI_API_KEY=… and OPENAI_BASE_URL=…
  tokengate test                           # one tiny chat completion
  tokengate topup --amount 5 --json        # a checkout URL for a person to pay
  tokengate logs export --from 2026-11-01 > logs.csv
  tokengate completions bash               # shell completions (bash, zsh, fish)

Agents: add --json (or set TOKENGATE_JSON=1) for one JSON document per line on stdout,
{\"error\": \"…\"} on failure. Never pay a top-up yourself: hand the URL to the user.

Exit codes: 0 success, 1 user error or 4xx (no key, bad input, 401, 402),
2 network error (retry with backoff), 3 server error, 5xx or login expired/denied.

Environment: TOKENGATE_API_URL (default http://127.0.0.1:3000), TOKENGATE_API_KEY,
TOKENGATE_JSON=1, TOKENGATE_CONFIG_DIR (default ~/.tokengate).";

const LOGIN_HELP: &str = "\
Prints a URL and a code; a person opens the URL, signs in to the portal, checks the code
and approves. The browser opens by itself when stdout is a terminal. Tokens are stored in
~/.tokengate/credentials.json (mode 0600) and refreshed automatically.

With --json, one JSON object per line: first {\"status\":\"pending\",\"user_code\",
\"verification_uri\",\"verification_uri_complete\",\"expires_in\",\"interval\"}, then
{\"status\":\"logged_in\",…}, or {\"error\":…} with exit code 3 if the code expired or was denied.

Examples:
  tokengate login
  tokengate login --no-open
  tokengate login --json          # agents: relay verification_uri_complete to the user";

const LOGOUT_HELP: &str = "\
Deletes ~/.tokengate/credentials.json. The cached key in last_key.txt stays.

Examples:
  tokengate logout
  tokengate logout --json";

const WHOAMI_HELP: &str = "\
Examples:
  tokengate whoami
  tokengate whoami --json";

const KEYS_HELP: &str = "\
Examples:
  tokengate keys create --name myapp
  tokengate keys list
  tokengate keys revoke 42";

const KEYS_CREATE_HELP: &str = "\
The raw key is printed once (stdout) and cached in ~/.tokengate/last_key.txt (mode 0600)
so that `env`, `test` and `models` find it; --no-cache skips the cache.

Examples:
  tokengate keys create --name myapp
  tokengate keys create --name ci --expires 30d --spend-limit 2.50
  tokengate keys create --name bot --models tokengate-fast,mock/fast-1 --json";

const KEYS_LIST_HELP: &str = "\
Raw keys are never listed; only their prefixes.

Examples:
  tokengate keys list
  tokengate keys list --json";

const KEYS_REVOKE_HELP: &str = "\
The key stops working at once (401). KEY is the id from `keys list`, or a key's unique name
or prefix.

Examples:
  tokengate keys revoke 42
  tokengate keys revoke myapp --json";

const BALANCE_HELP: &str = "\
Examples:
  tokengate balance
  tokengate balance --json";

const USAGE_HELP: &str = "\
Successful requests only.

Examples:
  tokengate usage
  tokengate usage --days 7 --json";

const MODELS_HELP: &str = "\
Every model and alias your API key may use, with prices in USD per 1k tokens. Uses --key,
TOKENGATE_API_KEY or the cached key.

Examples:
  tokengate models
  tokengate models --json | jq -r '.[].id'";

const TOPUP_HELP: &str = "\
Prints a checkout URL for a person to open and pay; the CLI never pays. The URL opens in
the browser only when stdout is a terminal (not with --json or --no-open). Agents: hand
the URL to the user.

Examples:
  tokengate topup --amount 5
  tokengate topup --amount 20 --no-open
  tokengate topup --amount 5 --json";

const ENV_HELP: &str = "\
Plain KEY=value lines, safe to append to a .env file. The key is --key, TOKENGATE_API_KEY
or the one cached by `keys create`.

Examples:
  tokengate env >> .env
  tokengate env --anthropic >> .env
  tokengate env --key sk-tg-… --json";

const TEST_HELP: &str = "\
Sends one tiny chat completion with your API key (--key, TOKENGATE_API_KEY or the cached
key). A 402 means the balance is empty: run `tokengate topup`.

Examples:
  tokengate test
  tokengate test --model mock/smart-1
  tokengate test --json";

const LOGS_EXPORT_HELP: &str = "\
Writes your request log, newest first, to stdout (and nothing else): CSV exactly as the API's
export sends it, or JSON Lines (one request per line). On a terminal, progress (rows, bytes)
goes to stderr. An interrupted export resumes with --after and the last complete row's
request_id: the rows after it, without a header, ready to append.

Examples:
  tokengate logs export --from 2026-11-01 --to 2026-11-30 > november.csv
  tokengate logs export --from 2026-11-01 --format jsonl > november.jsonl
  tokengate logs export --from 2026-11-01 --after req_01J… >> november.csv";

const COMPLETIONS_HELP: &str = "\
Prints a completion script for the shell on stdout.

Examples:
  tokengate completions bash > ~/.local/share/bash-completion/completions/tokengate
  tokengate completions zsh > \"${fpath[1]}/_tokengate\"
  tokengate completions fish > ~/.config/fish/completions/tokengate.fish";

/// The `tokengate` command line.
#[derive(Debug, Parser)]
#[command(
    name = "tokengate",
    version,
    about = "The tokengate command-line client: sign in, create API keys, check balance and usage.",
    after_help = MAIN_HELP,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Machine-parseable JSON on stdout (also TOKENGATE_JSON=1)
    #[arg(
        long,
        global = true,
        env = "TOKENGATE_JSON",
        hide_env_values = true,
        value_parser = FalseyValueParser::new()
    )]
    pub json: bool,

    /// The server's URL [env: TOKENGATE_API_URL; default: the signed-in server, else
    /// http://127.0.0.1:3000]
    #[arg(long, global = true, value_name = "URL")]
    pub api_url: Option<String>,

    /// API key for `env`, `test` and `models` [env: TOKENGATE_API_KEY; default: the key
    /// cached by `keys create`]
    #[arg(long, global = true, value_name = "KEY")]
    pub key: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in with the device flow (browser approval)
    #[command(after_help = LOGIN_HELP)]
    Login(LoginArgs),
    /// Forget the stored credentials
    #[command(after_help = LOGOUT_HELP)]
    Logout,
    /// Show the signed-in account and its balance
    #[command(after_help = WHOAMI_HELP)]
    Whoami,
    /// Create, list and revoke API keys
    #[command(subcommand, after_help = KEYS_HELP, arg_required_else_help = true)]
    Keys(KeysCommand),
    /// Show the account balance
    #[command(after_help = BALANCE_HELP)]
    Balance,
    /// Requests, tokens and spend over the last N days
    #[command(after_help = USAGE_HELP)]
    Usage(UsageArgs),
    /// List the models your key may use, with prices per 1k tokens
    #[command(after_help = MODELS_HELP)]
    Models,
    /// Get a checkout URL to add credit (a person pays; the CLI never does)
    #[command(after_help = TOPUP_HELP)]
    Topup(TopupArgs),
    /// Print OPENAI_API_KEY and OPENAI_BASE_URL lines for a .env file
    #[command(after_help = ENV_HELP)]
    Env(EnvArgs),
    /// Send one tiny chat completion to check the key and the gateway
    #[command(after_help = TEST_HELP)]
    Test(TestArgs),
    /// Your request log
    #[command(subcommand, arg_required_else_help = true)]
    Logs(LogsCommand),
    /// Print a shell completion script (bash, zsh, fish)
    #[command(after_help = COMPLETIONS_HELP)]
    Completions(CompletionsArgs),
}

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Export the request log as CSV or JSON Lines to stdout
    #[command(after_help = LOGS_EXPORT_HELP)]
    Export(LogsExportArgs),
}

/// The format of `logs export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The API's CSV, byte for byte
    Csv,
    /// One JSON object (the API's request-log row) per line
    Jsonl,
}

#[derive(Debug, Args)]
pub struct LogsExportArgs {
    /// From this time: RFC 3339, YYYY-MM-DD (UTC) or unix seconds
    #[arg(long, value_name = "WHEN")]
    pub from: Option<String>,
    /// Until this time; a date includes that whole day
    #[arg(long, value_name = "WHEN")]
    pub to: Option<String>,
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Resume: only the rows after this request id (the last row already written)
    #[arg(long, value_name = "REQUEST_ID")]
    pub after: Option<String>,
    /// Only this key's requests (its id from `keys list`)
    #[arg(long, value_name = "ID")]
    pub key_id: Option<i64>,
    /// Only this model or alias
    #[arg(long)]
    pub model: Option<String>,
    /// Only this status: 429, a class such as 4xx, or `error`
    #[arg(long)]
    pub status: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Do not try to open a browser
    #[arg(long)]
    pub no_open: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key (the raw key is shown once)
    #[command(after_help = KEYS_CREATE_HELP)]
    Create(KeysCreateArgs),
    /// List your API keys (never the raw keys)
    #[command(after_help = KEYS_LIST_HELP)]
    List,
    /// Revoke an API key
    #[command(after_help = KEYS_REVOKE_HELP)]
    Revoke(KeysRevokeArgs),
}

#[derive(Debug, Args)]
pub struct KeysCreateArgs {
    /// A name for the key, e.g. the project using it
    #[arg(long)]
    pub name: String,
    /// Expiry: a duration (30d, 12h, 2w, 90m), a date (2030-01-31, midnight UTC), an RFC
    /// 3339 time or unix seconds
    #[arg(long, value_name = "WHEN")]
    pub expires: Option<String>,
    /// Most this key may spend, in USD (e.g. 2.50)
    #[arg(long, value_name = "USD")]
    pub spend_limit: Option<String>,
    /// Models and aliases the key may use, comma-separated (exact names or provider/*)
    #[arg(long, value_name = "MODELS", value_delimiter = ',')]
    pub models: Vec<String>,
    /// Requests per minute
    #[arg(long)]
    pub rpm: Option<u32>,
    /// Tokens per minute
    #[arg(long)]
    pub tpm: Option<u32>,
    /// Do not cache the raw key in ~/.tokengate/last_key.txt
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Debug, Args)]
pub struct KeysRevokeArgs {
    /// The key's id (from `keys list`), or its unique name or prefix
    #[arg(value_name = "KEY")]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Number of days, 1–365
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u16).range(1..=365))]
    pub days: u16,
}

#[derive(Debug, Args)]
pub struct TopupArgs {
    /// Amount in USD, at least 1 (e.g. 5 or 12.50)
    #[arg(long, value_name = "USD")]
    pub amount: String,
    /// Open the checkout URL in a browser when stdout is a terminal (the default)
    #[arg(long, overrides_with = "no_open")]
    pub open: bool,
    /// Only print the checkout URL
    #[arg(long, overrides_with = "open")]
    pub no_open: bool,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Also print ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL
    #[arg(long)]
    pub anthropic: bool,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The model or alias to call [default: tokengate-fast, else the first model the key
    /// may use]
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
