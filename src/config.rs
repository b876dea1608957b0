//! Configuration: built-in defaults < `signet.toml` (or `--config FILE`, or
//! `SIGNET_CONFIG`) < `SIGNET_*` environment variables < flags.
//!
//! A configuration that breaks the lifecycle rules is refused here, at load,
//! with the reason and the fix (`docs/lifecycle.md` rule 4).

mod file;
mod layers;
mod limits;
mod signer;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::clock::UnixTime;
use crate::keys::{Algorithm, MAX_RETIRING, Policy, Schedule};

pub use limits::Limits;
pub use signer::{Pin, Pkcs11Config, SignerConfig, SignerKind, TokenSelector};

/// The file read when neither `--config` nor `SIGNET_CONFIG` names one.
pub const DEFAULT_FILE: &str = "signet.toml";

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped fields.
    #[error("{path} is not a valid signet configuration: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where (line and column).
        message: String,
    },
    /// A value is malformed or breaks a lifecycle rule.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, as written in the file or environment.
        field: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The two listeners.
#[derive(Clone, Debug, Serialize)]
pub struct ServerConfig {
    /// JWKS, discovery, health and metrics.
    pub public_addr: SocketAddr,
    /// Signing and key management.
    pub admin_addr: SocketAddr,
    /// Connections and timeouts.
    #[serde(flatten)]
    pub limits: Limits,
}

/// JWKS publication.
#[derive(Clone, Debug, Serialize)]
pub struct JwksConfig {
    /// `Cache-Control: max-age`, also the publish-ahead minimum.
    #[serde(with = "human")]
    pub max_age: Duration,
    /// `Cache-Control: max-age` of the revocation document: how soon a
    /// signet verifier that cached the JWKS learns of a revocation.
    #[serde(with = "human")]
    pub revocations_max_age: Duration,
}

/// Where keyrings live.
#[derive(Clone, Serialize)]
pub struct StoreConfig {
    /// `file` or `postgres`.
    pub kind: String,
    /// The keys directory of the file store.
    pub path: PathBuf,
    /// How often a server looks for changes made by other processes.
    #[serde(with = "human")]
    pub poll_interval: Duration,
    /// How far replicas' clocks may differ (`postgres` only; one host's
    /// processes share a clock): added to the lead and the retention.
    #[serde(with = "human")]
    pub clock_skew: Duration,
    /// Whether replicas LISTEN for the database's change notifications
    /// (`postgres` only). Off behind a proxy that cannot LISTEN (PgBouncer in
    /// transaction mode): changes then arrive within `poll_interval`.
    pub listen: bool,
    /// This replica's own record of the newest keyring generation it has
    /// served, per purpose (a small file authenticated under the master
    /// key): after a restart it refuses an older keyring than it served,
    /// whatever the store says. Unset: kept in memory only.
    pub state_file: Option<PathBuf>,
    /// `SIGNET_DATABASE_URL`, for `postgres`: a secret, never serialised,
    /// logged or shown.
    #[serde(skip)]
    pub database_url: Option<String>,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("poll_interval", &self.poll_interval)
            .field("clock_skew", &self.clock_skew)
            .field("listen", &self.listen)
            .field("state_file", &self.state_file)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// One purpose's keys and tokens.
#[derive(Clone, Debug, Serialize)]
pub struct PurposeConfig {
    /// Algorithms kept for this purpose; the first signs by default.
    pub algorithms: Vec<Algorithm>,
    /// Longest lifetime of a token.
    #[serde(with = "human")]
    pub token_ttl: Duration,
    /// Rotation schedule.
    #[serde(serialize_with = "schedule_str")]
    pub rotate: Schedule,
    /// JWT header `typ` of this purpose's tokens.
    pub typ: String,
    /// RSA modulus size for new RSA keys.
    pub rsa_bits: u32,
    /// Whether third parties verify this purpose's tokens: its keys are in
    /// the JWKS that OIDC discovery's `jwks_uri` names.
    pub discovery: bool,
    /// Whether a token is used once: `POST /v1/tokens/consume` records its
    /// `jti`, and a consumed token is refused from then on.
    pub single_use: bool,
    /// Where this purpose's new private keys are made (`[signer] kind`, or
    /// the purpose's own `signer = "software"`).
    pub signer: SignerKind,
}

/// Where [`Config::issuer`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssuerSource {
    /// `SIGNET_ISSUER`.
    Environment,
    /// `issuer` in the configuration file.
    File,
    /// Not set: the default, following `server.public_addr`.
    Default,
    /// Not set, and moved by `serve` to the address it listens on
    /// (`--public-addr`, or port 0), which other commands do not see.
    ServeAddress,
}

/// A purpose name the configuration does not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown purpose {name:?}: the configured purposes are {known}")]
pub struct UnknownPurpose {
    /// The name asked for.
    pub name: String,
    /// The configured purposes, comma-separated.
    pub known: String,
}

/// The effective configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// `iss` of every token, and the OIDC issuer.
    pub issuer: String,
    /// Whether `issuer` was left to its default (then it follows the public address).
    #[serde(skip)]
    pub issuer_is_default: bool,
    /// Where `issuer` came from ([`Config::issuer_origin`] words it).
    #[serde(skip)]
    pub issuer_source: IssuerSource,
    /// Clock skew tolerated on `exp`/`nbf`, added to key retention.
    #[serde(with = "human")]
    pub leeway: Duration,
    /// Listeners.
    pub server: ServerConfig,
    /// JWKS publication.
    pub jwks: JwksConfig,
    /// The store.
    pub store: StoreConfig,
    /// Where private keys are made.
    pub signer: SignerConfig,
    /// Token purposes by name.
    pub purposes: BTreeMap<String, PurposeConfig>,
}

mod human {
    use std::time::Duration;
    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::show_duration(*d))
    }
}

/// A duration in the largest unit that holds it whole (`7d`, `90m`, `45s`),
/// as a person writes it, rather than humantime's mixed units.
pub fn show_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn schedule_str<S: serde::Serializer>(v: &Schedule, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

/// Parses a duration such as `90s`, `10m`, `7d` or `1h 30m`.
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        invalid(
            field,
            format!("{text:?} is not a duration ({e}); write e.g. \"90s\", \"10m\", \"7d\""),
        )
    })?;
    if d.subsec_nanos() != 0 {
        return Err(invalid(field, format!("{text:?}: use whole seconds")));
    }
    Ok(d)
}

/// Where the configuration comes from: a file path and a way to read variables.
pub struct Sources<'a> {
    /// `--config FILE`, if given.
    pub file: Option<&'a Path>,
    /// Reads an environment variable (injected so tests need not touch the process environment).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Config {
    /// Loads defaults, the file, then `SIGNET_*` variables, and checks the
    /// result against the lifecycle rules as of `now`. Each part is read and
    /// checked on its own (`config/layers.rs`).
    pub fn load(sources: &Sources<'_>, now: UnixTime) -> Result<Config, ConfigError> {
        let file = layers::read_file(sources)?;
        Config::from_file(file, sources.env, now)
    }

    /// [`load`](Self::load) from the text of a configuration file.
    pub fn parse(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        now: UnixTime,
    ) -> Result<Config, ConfigError> {
        let file = layers::parse_file(text, PathBuf::from("(text)"))?;
        Config::from_file(file, env, now)
    }

    fn from_file(
        file: file::File,
        env: &dyn Fn(&str) -> Option<String>,
        now: UnixTime,
    ) -> Result<Config, ConfigError> {
        let layers = layers::Layers { env };
        let (issuer, issuer_is_default) = layers.issuer(file.issuer)?;
        let leeway = layers.duration("SIGNET_LEEWAY", "leeway", file.leeway, "60s")?;
        let server = layers.server(file.server)?;
        let jwks = layers.jwks(file.jwks)?;
        let store = layers.store(file.store)?;
        if store.database_url.is_some() && issuer_is_default {
            return Err(invalid(
                "issuer",
                "replicas on one database must name the same issuer, and the default follows each replica's own address: set issuer (or SIGNET_ISSUER) to the URL clients reach, e.g. \"https://auth.example.com\"",
            ));
        }
        let signer = layers.signer(file.signer, server.limits.signing_concurrency + 1)?;
        let purposes = file::purposes(file.purposes, signer.kind)?;
        if purposes.is_empty() {
            return Err(invalid(
                "purposes",
                "every purpose is disabled; enable at least one",
            ));
        }
        let mut config = Config {
            issuer,
            issuer_is_default,
            issuer_source: IssuerSource::Default,
            leeway,
            server,
            jwks,
            store,
            signer,
            purposes,
        };
        config.set_public_addr(config.server.public_addr);
        config.issuer_source = match (env("SIGNET_ISSUER"), issuer_is_default) {
            (Some(_), _) => IssuerSource::Environment,
            (None, false) => IssuerSource::File,
            (None, true) => IssuerSource::Default,
        };
        config.check_rules(now)?;
        Ok(config)
    }

    /// Rule 4: refuse what the lifecycle cannot honour.
    fn check_rules(&self, now: UnixTime) -> Result<(), ConfigError> {
        for (name, p) in &self.purposes {
            let Some(period) = p.rotate.shortest_period(now, 36) else {
                return Err(invalid(
                    format!("purposes.{name}.rotate"),
                    format!(
                        "{:?} never fires again; use e.g. \"0 0 0 1 * *\" (monthly)",
                        p.rotate.as_str()
                    ),
                ));
            };
            let show = show_duration;
            let Ok(policy) = self.policy(name) else {
                continue;
            };
            if policy.lead() > period {
                return Err(invalid(
                    "jwks.max_age",
                    format!(
                        "{} plus store.poll_interval ({}) and, for a shared store, store.clock_skew is longer than the rotation period of {name} ({}): a new key could not be published that long before it signs (rule 2). Shorten jwks.max_age or store.poll_interval, or rotate {name} less often",
                        show(self.jwks.max_age),
                        show(self.store.poll_interval),
                        show(period)
                    ),
                ));
            }
            // MAX_RETIRING is a small constant: the cast cannot truncate.
            let cap = MAX_RETIRING as u32;
            if policy.retention() > period * cap {
                return Err(invalid(
                    format!("purposes.{name}.token_ttl"),
                    format!(
                        "{} (plus leeway, jwks.max_age and store.poll_interval) outlives {cap} rotation periods of {}: the JWKS would carry more than {cap} retired keys (rule 3). Shorten token_ttl or rotate less often",
                        show(p.token_ttl),
                        show(period)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Sets the public address (a `--public-addr` flag). An issuer left to its
    /// default follows it, so discovery points at where the JWKS really is.
    pub fn set_public_addr(&mut self, addr: SocketAddr) {
        self.server.public_addr = addr;
        if self.issuer_is_default {
            let host = if addr.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                addr.ip().to_string()
            };
            let host = if addr.is_ipv6() && !addr.ip().is_unspecified() {
                format!("[{host}]")
            } else {
                host
            };
            let issuer = format!("http://{host}:{}", addr.port());
            if issuer != self.issuer {
                self.issuer_source = IssuerSource::ServeAddress;
            }
            self.issuer = issuer;
        }
    }

    /// Where the issuer came from, as a wrong-issuer refusal names it.
    pub fn issuer_origin(&self) -> String {
        match self.issuer_source {
            IssuerSource::Environment => "SIGNET_ISSUER".to_owned(),
            IssuerSource::File => "issuer in the configuration file".to_owned(),
            IssuerSource::Default => format!(
                "the default: issuer is not set, so it follows server.public_addr ({})",
                self.server.public_addr
            ),
            IssuerSource::ServeAddress => format!(
                "the default: issuer is not set, so it follows this server's own public address ({}, from --public-addr or port 0), which other signet commands do not see",
                self.server.public_addr
            ),
        }
    }

    /// A configured purpose, or an error that lists the configured ones.
    pub fn purpose(&self, name: &str) -> Result<&PurposeConfig, UnknownPurpose> {
        self.purposes.get(name).ok_or_else(|| UnknownPurpose {
            name: name.to_owned(),
            known: self.purposes.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// The lifecycle policy of a purpose.
    pub fn policy(&self, purpose: &str) -> Result<Policy, UnknownPurpose> {
        let p = self.purpose(purpose)?;
        Ok(Policy {
            algorithms: p.algorithms.clone(),
            token_ttl: p.token_ttl,
            leeway: self.leeway,
            max_age: self.jwks.max_age,
            poll_interval: self.store.poll_interval,
            clock_skew: if self.store.database_url.is_some() {
                self.store.clock_skew
            } else {
                Duration::ZERO
            },
            schedule: p.rotate.clone(),
        })
    }

    /// The effective configuration as TOML (it holds no secrets).
    ///
    /// It loads again to the same configuration: a built-in purpose that is
    /// disabled is rendered as such (found by the configuration fuzz target:
    /// it used to be left out, and so came back enabled).
    pub fn to_toml(&self) -> String {
        let mut out = toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
        for name in file::BUILT_IN {
            if !self.purposes.contains_key(name) {
                out.push_str(&format!("\n[purposes.{name}]\nenabled = false\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
