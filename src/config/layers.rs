//! Each part of the configuration, read from its layers (built-in default <
//! file < `SIGNET_*` variable) and checked on its own. Errors name the field
//! as the user wrote it: the file's `jwks.max_age`, or the variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{File, FileJwks, FileServer, FileStore};
use super::{
    ConfigError, DEFAULT_FILE, JwksConfig, Limits, ServerConfig, Sources, StoreConfig, invalid,
    parse_duration,
};

/// Reads the configuration file named by `--config`, `SIGNET_CONFIG` or
/// present as `./signet.toml`; an empty one if there is none.
pub(super) fn read_file(sources: &Sources<'_>) -> Result<File, ConfigError> {
    let path = sources
        .file
        .map(Path::to_path_buf)
        .or_else(|| (sources.env)("SIGNET_CONFIG").map(PathBuf::from))
        .or_else(|| {
            Path::new(DEFAULT_FILE)
                .exists()
                .then(|| PathBuf::from(DEFAULT_FILE))
        });
    let Some(path) = path else {
        return Ok(File::default());
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    parse_file(&text, path)
}

/// The configuration file's text, as read from `path` (named in errors).
pub(super) fn parse_file(text: &str, path: PathBuf) -> Result<File, ConfigError> {
    toml::from_str::<File>(text).map_err(|e| ConfigError::Parse {
        path,
        // Kept as written: TOML errors show the line and a caret.
        message: format!("\n{}", e.to_string().trim_end()),
    })
}

/// The variable layer over the file's values.
pub(super) struct Layers<'a> {
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
}

impl Layers<'_> {
    /// The value of `var` if set, else the file's, else `default`; with the
    /// name to blame in an error (the variable, or the file's field).
    pub(super) fn pick(
        &self,
        var: &str,
        field: &str,
        file: Option<String>,
        default: &str,
    ) -> (String, String) {
        match (self.env)(var) {
            Some(v) => (v, var.to_owned()),
            None => (file.unwrap_or_else(|| default.to_owned()), field.to_owned()),
        }
    }

    pub(super) fn duration(
        &self,
        var: &str,
        field: &str,
        file: Option<String>,
        default: &str,
    ) -> Result<Duration, ConfigError> {
        let (text, field) = self.pick(var, field, file, default);
        parse_duration(&field, &text)
    }

    /// `iss` of every token, and whether it was left to its default.
    pub(super) fn issuer(&self, file: Option<String>) -> Result<(String, bool), ConfigError> {
        let is_default = file.is_none() && (self.env)("SIGNET_ISSUER").is_none();
        let (issuer, field) = self.pick("SIGNET_ISSUER", "issuer", file, "http://127.0.0.1:8080");
        if !(issuer.starts_with("https://") || issuer.starts_with("http://"))
            || issuer.ends_with('/')
        {
            return Err(invalid(
                field,
                format!(
                    "{issuer:?} must be an http(s) URL without a trailing slash, e.g. \"https://auth.example.com\""
                ),
            ));
        }
        Ok((issuer, is_default))
    }

    fn addr(
        &self,
        var: &str,
        field: &str,
        file: Option<String>,
        default: &str,
    ) -> Result<SocketAddr, ConfigError> {
        let (text, field) = self.pick(var, field, file, default);
        text.parse().map_err(|_| {
            invalid(
                field,
                format!("{text:?} is not an address; write host:port, e.g. \"127.0.0.1:8080\""),
            )
        })
    }

    /// The two listeners and their limits.
    pub(super) fn server(&self, file: FileServer) -> Result<ServerConfig, ConfigError> {
        let limits = Limits::from_file(&file)?;
        let server = ServerConfig {
            public_addr: self.addr(
                "SIGNET_PUBLIC_ADDR",
                "server.public_addr",
                file.public_addr,
                "127.0.0.1:8080",
            )?,
            admin_addr: self.addr(
                "SIGNET_ADMIN_ADDR",
                "server.admin_addr",
                file.admin_addr,
                "127.0.0.1:8081",
            )?,
            limits,
        };
        if server.public_addr == server.admin_addr && server.public_addr.port() != 0 {
            return Err(invalid(
                "server.admin_addr",
                "must differ from server.public_addr: the admin API is never on the public listener",
            ));
        }
        Ok(server)
    }

    /// JWKS publication.
    pub(super) fn jwks(&self, file: FileJwks) -> Result<JwksConfig, ConfigError> {
        let (text, field) = self.pick("SIGNET_JWKS_MAX_AGE", "jwks.max_age", file.max_age, "5m");
        let max_age = parse_duration(&field, &text)?;
        if max_age.is_zero() {
            return Err(invalid(
                field,
                "must be at least 1s: it is also how long a new key is published before it signs",
            ));
        }
        // Default 15 s, or jwks.max_age if shorter.
        let default = format!("{}s", max_age.as_secs().min(15));
        let (text, field) = self.pick(
            "SIGNET_JWKS_REVOCATIONS_MAX_AGE",
            "jwks.revocations_max_age",
            file.revocations_max_age,
            &default,
        );
        let revocations_max_age = parse_duration(&field, &text)?;
        if revocations_max_age.is_zero() || revocations_max_age > max_age {
            return Err(invalid(
                field,
                format!(
                    "must be at least 1s and at most jwks.max_age ({}s): it bounds how long a cached revocation document may lag",
                    max_age.as_secs()
                ),
            ));
        }
        Ok(JwksConfig {
            max_age,
            revocations_max_age,
        })
    }

    /// Where keyrings live.
    pub(super) fn store(&self, file: FileStore) -> Result<StoreConfig, ConfigError> {
        let (kind, field) = self.pick("SIGNET_STORE_KIND", "store.kind", file.kind, "file");
        if file.url.is_some() || (self.env)("SIGNET_STORE_URL").is_some() {
            return Err(invalid(
                "store.url",
                "the database URL holds a password: never put it in the file; set SIGNET_DATABASE_URL",
            ));
        }
        let database_url = match kind.as_str() {
            "file" => None,
            "postgres" => Some((self.env)("SIGNET_DATABASE_URL").ok_or_else(|| {
                invalid(
                    field,
                    "\"postgres\" needs SIGNET_DATABASE_URL, e.g. postgres://signet@db.internal/signet or host=/run/postgresql dbname=signet",
                )
            })?),
            other => {
                return Err(invalid(
                    field,
                    format!("{other:?} is not a store; use \"file\" or \"postgres\""),
                ));
            }
        };
        let (path, _) = self.pick("SIGNET_STORE_PATH", "store.path", file.path, "keys");
        let (poll, field) = self.pick(
            "SIGNET_STORE_POLL_INTERVAL",
            "store.poll_interval",
            file.poll_interval,
            "5s",
        );
        let poll_interval = parse_duration(&field, &poll)?;
        if poll_interval.is_zero() {
            return Err(invalid(field, "must be at least 1s"));
        }
        let clock_skew = self.duration(
            "SIGNET_STORE_CLOCK_SKEW",
            "store.clock_skew",
            file.clock_skew,
            "2s",
        )?;
        let listen = match (self.env)("SIGNET_STORE_LISTEN") {
            None => file.listen.unwrap_or(true),
            Some(v) => match v.as_str() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(invalid(
                        "SIGNET_STORE_LISTEN",
                        format!("{other:?} is not a boolean; use true or false"),
                    ));
                }
            },
        };
        let state_file = match (self.env)("SIGNET_STORE_STATE_FILE").or(file.state_file) {
            Some(p) if p.is_empty() => None,
            p => p.map(PathBuf::from),
        };
        Ok(StoreConfig {
            state_file,
            kind,
            path: PathBuf::from(path),
            poll_interval,
            clock_skew,
            listen,
            database_url,
        })
    }
}
