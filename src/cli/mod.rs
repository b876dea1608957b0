//! The `signet` command line.
//!
//! Key commands work on the store directly, under its lock; a running server
//! picks their changes up within `store.poll_interval`. Exit codes: 0 ok,
//! 1 invalid token or refused operation, 2 usage, configuration or storage error.

mod check;
mod dotenv;
mod keys;
mod legacy;
mod open;
mod serve;
mod stdout;
mod store;

use open::replica_id;
pub use open::{open, open_as, open_read_only};

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, Sources};
use crate::http::auth::ADMIN_TOKEN_FILE;
use crate::keys::token::VerifyError;
use crate::service::{ServiceError, SignError};
use crate::storage::StoreError;
use crate::storage::seal::MASTER_KEY_FILE;

/// `signet --version`: the version and the crypto backend built in.
const VERSION: &str = if cfg!(feature = "aws-lc-rs") {
    concat!(env!("CARGO_PKG_VERSION"), " (crypto: aws-lc-rs)")
} else {
    concat!(env!("CARGO_PKG_VERSION"), " (crypto: ring)")
};

/// signet: rotating asymmetric JWT signing keys, published as a JWKS.
#[derive(Parser, Debug)]
#[command(name = "signet", version = VERSION, about)]
pub struct Cli {
    /// Configuration file (default: $SIGNET_CONFIG, else ./signet.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server: public and admin listeners, and the rotation scheduler.
    Serve(ServeArgs),
    /// Inspect and change keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Sign and verify tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Move keyrings between stores.
    #[command(subcommand)]
    Store(StoreCommand),
}

/// `signet store ...`
#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Create or migrate the PostgreSQL schema (SIGNET_DATABASE_URL) as the
    /// tables' owner, and grant the role signet serves as what it needs.
    Migrate {
        /// The role `signet serve` connects as: granted SELECT, INSERT and
        /// UPDATE on the keyrings, SELECT and INSERT on the history, SELECT,
        /// INSERT and DELETE on the token ids; nothing else.
        #[arg(long, value_name = "ROLE")]
        grant: Option<String>,
    },
    /// Copy every configured purpose's keyring, sealed and checked, from one
    /// store to another: a keys directory, or `database` (SIGNET_DATABASE_URL).
    Copy {
        /// The source: a keys directory, or `database`.
        #[arg(long, value_name = "DIR|database")]
        from: String,
        /// The destination: a keys directory, or `database`.
        #[arg(long, value_name = "DIR|database")]
        to: String,
        /// Overwrite keyrings the destination already holds.
        #[arg(long)]
        force: bool,
    },
}

/// `signet keys ...`
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List keys: kid, purpose, alg, state and lifecycle times.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Promote the pending key now and schedule a new successor.
    Rotate {
        /// The purpose to rotate (default: all).
        purpose: Option<String>,
        /// Rotate even if the pending key is younger than jwks.max_age.
        #[arg(long)]
        force: bool,
    },
    /// Withdraw a key at once and for good.
    Revoke {
        /// The key id (base64url: it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Import legacy HMAC secrets (verify only) so that tokens an
    /// application signed with them keep verifying until they expire.
    ImportHmac {
        /// The purpose their tokens are for.
        #[arg(long)]
        purpose: String,
        /// A variable holding a secret, current first (repeat: the order
        /// they are tried in, as the application did).
        #[arg(long = "secret-env", value_name = "NAME", required = true)]
        secret_env: Vec<String>,
        /// Read the variables from this `.env` file instead of the environment.
        #[arg(long, value_name = "PATH")]
        env_file: Option<std::path::PathBuf>,
        /// How long they verify (default and minimum: the purpose's
        /// token_ttl plus leeway), e.g. 30d.
        #[arg(long, value_name = "DURATION")]
        window: Option<String>,
        /// The `iss` the legacy tokens carry, if they carry one: checked.
        #[arg(long, value_name = "ISS")]
        issuer: Option<String>,
    },
    /// Re-encrypt every private key under the newest master key.
    Reencrypt,
    /// Authenticate keyrings written by an earlier signet, after checking them.
    Authenticate,
}

/// `signet token ...`
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Sign a token and print it.
    Sign(SignArgs),
    /// Verify a token and print its claims; exit 1 when invalid.
    Verify {
        /// The token's purpose.
        #[arg(long)]
        purpose: String,
        /// Verify against this JWKS URL (as a microservice would) instead of the store.
        #[arg(long, value_name = "URL")]
        jwks_url: Option<String>,
        /// With --jwks-url: the issuer the token must name (default: the
        /// `issuer` of /.well-known/openid-configuration at the URL's origin).
        #[arg(long, value_name = "ISS", requires = "jwks_url")]
        issuer: Option<String>,
        /// With --jwks-url: the audience the token must name; without it, a
        /// token that names an audience is refused.
        #[arg(long, value_name = "AUD", requires = "jwks_url")]
        audience: Option<String>,
        /// With --jwks-url: allow plain http to a host other than loopback.
        #[arg(long, requires = "jwks_url")]
        allow_http: bool,
        /// The token.
        token: String,
    },
}

/// `signet token sign` arguments.
#[derive(Args, Debug)]
pub struct SignArgs {
    /// The token's purpose.
    #[arg(long)]
    pub purpose: String,
    /// Custom claims as a JSON object.
    #[arg(long, default_value = "{}")]
    pub claims: String,
    /// Lifetime (at most the purpose's token_ttl), e.g. 5m.
    #[arg(long)]
    pub ttl: Option<String>,
    /// Algorithm (default: the purpose's first).
    #[arg(long)]
    pub alg: Option<String>,
}

/// `signet serve` arguments.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Public listener address (overrides server.public_addr).
    #[arg(long, value_name = "ADDR")]
    pub public_addr: Option<std::net::SocketAddr>,
    /// Admin listener address (overrides server.admin_addr).
    #[arg(long, value_name = "ADDR")]
    pub admin_addr: Option<std::net::SocketAddr>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// How logs are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `signet config ...`
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective configuration, secrets redacted.
    Check,
}

/// A command's failure, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The lifecycle rules refused.
    #[error("refused: {0}")]
    Refused(String),
    /// The token is invalid; the reason's stable name comes first.
    #[error("invalid token ({reason}): {0}", reason = .0.reason())]
    Invalid(#[from] VerifyError),
    /// A remote dependency (the JWKS URL, its discovery document) is unavailable.
    #[error("{0}")]
    Unavailable(String),
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Invalid(
                VerifyError::JwksUnavailable(_) | VerifyError::RevocationsUnavailable(_),
            )
            | CliError::Unavailable(_)
            | CliError::Store(StoreError::Database { .. }) => 3,
            CliError::Refused(_) | CliError::Invalid(_) => 1,
            CliError::Usage(_) | CliError::Config(_) | CliError::Store(_) => 2,
        }
    }
}

impl From<ServiceError> for CliError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Store(e) => CliError::Store(e),
            ServiceError::Refused(_) | ServiceError::UnknownKid(_) => {
                CliError::Refused(e.to_string())
            }
            other => CliError::Usage(other.to_string()),
        }
    }
}

impl From<SignError> for CliError {
    /// A request signet will not sign (reserved claims, a ttl over the
    /// purpose's, an unknown purpose or algorithm) is a usage error, like a
    /// store that cannot sign: 2.
    fn from(e: SignError) -> Self {
        CliError::Usage(e.to_string())
    }
}

/// Parses the process arguments, runs the command, and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Serve(args) => init_logging("info,tokio_cron_scheduler=warn", args.log_format),
        _ => init_logging("warn", LogFormat::Text),
    }
    match run(cli, &|k| std::env::var(k).ok()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signet: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default level.
fn init_logging(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// Runs a parsed command; `env` reads environment variables.
pub fn run(cli: Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<(), CliError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut config = Config::load(
        &Sources {
            file: cli.config.as_deref(),
            env,
        },
        clock.now(),
    )?;
    match cli.command {
        Command::Serve(args) => {
            if let Some(addr) = args.public_addr {
                config.set_public_addr(addr);
            }
            config.server.admin_addr = args.admin_addr.unwrap_or(config.server.admin_addr);
            serve::run(config, env, clock)
        }
        Command::Store(cmd) => store::run(cmd, &config, env),
        Command::Config(ConfigCommand::Check) => check::run(config, env, clock),
        Command::Keys(KeysCommand::List { json }) => {
            keys::list(open_read_only(config, env, clock)?, json)
        }
        Command::Keys(KeysCommand::ImportHmac {
            purpose,
            secret_env,
            env_file,
            window,
            issuer,
        }) => {
            let import = legacy::Import {
                purpose: &purpose,
                names: &secret_env,
                env_file: env_file.as_deref(),
                window: window.as_deref(),
                issuer,
            };
            let secrets = import.read(env)?;
            legacy::import_hmac(&import, secrets, open(config, env, clock)?)
        }
        Command::Keys(cmd) => keys::run(cmd, open(config, env, clock)?),
        Command::Token(TokenCommand::Verify {
            purpose,
            jwks_url: Some(url),
            issuer,
            audience,
            allow_http,
            token,
        }) => keys::verify_remote(
            &config,
            keys::Remote {
                purpose: &purpose,
                url: &url,
                issuer,
                audience,
                allow_http,
            },
            &token,
        ),
        Command::Token(TokenCommand::Verify { purpose, token, .. }) => {
            let dir = config.store.path.clone();
            match open_read_only(config, env, clock)? {
                Some(service) => keys::verify_local(&service, &purpose, &token),
                None => Err(CliError::Usage(format!(
                    "the store at {} holds no keyring, so there is nothing to verify against: start `signet serve` (or sign a token) there first, or pass --jwks-url",
                    dir.display()
                ))),
            }
        }
        Command::Token(cmd) => keys::run_token(cmd, open(config, env, clock)?),
    }
}
