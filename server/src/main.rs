//! The `tokengate-server` command line: `serve` (default), `init`, `doctor`, `admin create`,
//! `admin token` and `mock-upstream`.

use std::path::PathBuf;

/// mimalloc: the request path allocates many small, short-lived buffers; glibc malloc spent
/// ~8% of CPU on them under load (bench/run.sh, perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokengate_core::{Db, accounts, password};
use tokengate_server::config::Config;
use tokengate_server::{Server, doctor, envfile};

#[derive(Parser)]
#[command(
    name = "tokengate-server",
    version,
    about = "tokengate: LLM API gateway and customer portal"
)]
struct Cli {
    /// Optional TOML config file; TOKENGATE_* environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Optional env file of secrets (`NAME=value` lines, as `init` writes); variables
    /// already in the environment win over it.
    #[arg(long, global = true, value_name = "PATH")]
    env_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Write a first tokengate.toml and env file, asking on a terminal (or from flags), each
    /// answer checked before anything is written.
    Init(Box<tokengate_server::init::InitArgs>),
    /// Check the configuration as `serve` reads it: one line per check with its fix; exit
    /// code 0 all good, 1 warnings, 2 errors.
    Doctor,
    /// Manage administrators.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Run the mock provider as a standalone OpenAI-compatible upstream.
    MockUpstream {
        #[arg(long, default_value = "127.0.0.1:9100")]
        listen: String,
        /// Require this bearer key (401 otherwise), to try provider-key checks.
        #[arg(long, value_name = "KEY")]
        api_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an administrator; the password is generated and printed once.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Administrator")]
        name: String,
    },
    /// Print an access token for an existing administrator (for scripts calling the admin
    /// API); it carries every scope and is printed once, on stdout only.
    Token {
        #[arg(long)]
        email: String,
        /// Lifetime in seconds (at most 30 days).
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; draining in-flight requests");
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Init(args) = command {
        let config_path = cli
            .config
            .unwrap_or_else(|| PathBuf::from("tokengate.toml"));
        let env_path = cli
            .env_file
            .unwrap_or_else(|| tokengate_server::init::default_env_file(&config_path));
        tokengate_server::init::run(*args, &config_path, &env_path).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let loaded = envfile::load_config(cli.config.as_deref(), cli.env_file.as_deref());
    if let Command::Doctor = command {
        let report = match loaded {
            Ok(config) => {
                let sources = doctor::Sources {
                    config_file: cli.config.as_deref(),
                    env_file: cli.env_file.as_deref(),
                };
                doctor::diagnose(&config, &sources).await
            }
            Err(e) => doctor::config_error(&e.0),
        };
        print!("{}", report.render());
        return Ok(ExitCode::from(report.exit_code()));
    }
    let config = loaded.map_err(|e| e.to_string())?;
    init_logging(&config);
    match command {
        Command::Init(_) | Command::Doctor => unreachable!("handled above"),
        Command::Serve => {
            let listen = config.listen;
            let server = Server::start(config).await.map_err(|e| e.to_string())?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            tracing::info!(%listen, "tokengate listening");
            server
                .serve(listener, shutdown_signal())
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::MockUpstream { listen, api_key } => {
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            tracing::info!(%listen, "mock upstream listening");
            axum::serve(
                listener,
                tokengate_server::mock_upstream::router_with_key(api_key),
            )
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin {
            command: AdminCommand::Create { email, name },
        } => {
            let db = Db::connect(&config.database_url)
                .await
                .map_err(|e| e.to_string())?;
            let pw = password::generate();
            let pw2 = pw.clone();
            let hash = tokio::task::spawn_blocking(move || password::hash(&pw2))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let user =
                accounts::create_user(&db, &email, &name, Some(&hash), accounts::Role::Admin)
                    .await
                    .map_err(|e| e.to_string())?;
            // The operator typed the address: it counts as verified.
            tokengate_core::auth::mark_email_verified(&db, user.id)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "Created administrator {} (id {}).\nPassword (shown once): {pw}",
                user.email, user.id
            );
            db.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin {
            command: AdminCommand::Token { email, ttl },
        } => {
            if !(60..=30 * 86_400).contains(&ttl) {
                return Err("--ttl must be between 60 and 2592000 seconds".into());
            }
            let mut config = config;
            config.load_or_create_secret().map_err(|e| e.to_string())?;
            let db = Db::connect(&config.database_url)
                .await
                .map_err(|e| e.to_string())?;
            let user = accounts::get_user_by_email(&db, &email)
                .await
                .map_err(|_| format!("no account with email {email}"))?;
            db.close().await;
            if user.role != accounts::Role::Admin || user.status != accounts::UserStatus::Active {
                return Err(format!("{email} is not an active administrator"));
            }
            let now = tokengate_core::now_ms() / 1000;
            let token = tokengate_server::auth::token::mint(
                &config.secret_bytes(),
                user.id,
                user.auth_epoch,
                &config.api_audience(),
                tokengate_server::auth::scope::ALL,
                now,
                ttl,
            );
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokengate-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tokengate-server: {e}");
            ExitCode::FAILURE
        }
    }
}
