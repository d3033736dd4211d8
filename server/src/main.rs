//! The `tokengate-server` command line: `serve` (default), `admin create`, and
//! `mock-upstream`.

use std::path::PathBuf;

/// mimalloc: the request path allocates many small, short-lived buffers; glibc malloc spent
/// ~8% of CPU on them under load (bench/run.sh, perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokengate_core::{Db, accounts, password};
use tokengate_server::Server;
use tokengate_server::config::Config;

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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Manage administrators.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Run the mock provider as a standalone OpenAI-compatible upstream.
    MockUpstream {
        #[arg(long, default_value = "127.0.0.1:9100")]
        listen: String,
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

async fn run(cli: Cli) -> Result<(), String> {
    let config = Config::load(cli.config.as_deref(), |k| std::env::var(k).ok())
        .map_err(|e| e.to_string())?;
    init_logging(&config);
    match cli.command.unwrap_or(Command::Serve) {
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
            Ok(())
        }
        Command::MockUpstream { listen } => {
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            tracing::info!(%listen, "mock upstream listening");
            axum::serve(listener, tokengate_server::mock_upstream::router())
                .with_graceful_shutdown(shutdown_signal())
                .await
                .map_err(|e| e.to_string())
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
            Ok(())
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
            Ok(())
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokengate-server: {e}");
            ExitCode::FAILURE
        }
    }
}
