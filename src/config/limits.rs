//! What one client may hold of a listener: connections and time.

use std::time::Duration;

use serde::Serialize;

use super::file::FileServer;
use super::{ConfigError, invalid, parse_duration};

/// Connection limits of the two listeners.
#[derive(Clone, Debug, Serialize)]
pub struct Limits {
    /// Connections the public listener serves at once; more wait in the
    /// kernel's backlog until one closes.
    pub max_connections: usize,
    /// The admin listener's own budget, so a flood on the public port never
    /// locks out operators or the issuer.
    pub admin_max_connections: usize,
    /// A connection must deliver a complete request head within this long of
    /// opening or of its previous response: bounds idle keep-alive
    /// connections and slowly sent headers alike.
    #[serde(with = "super::human")]
    pub header_timeout: Duration,
    /// A request (body included) must be read and answered within this long.
    #[serde(with = "super::human")]
    pub request_timeout: Duration,
    /// Signatures computed at once (default: half the cores, at least one).
    pub signing_concurrency: usize,
    /// Signing requests that may wait for a slot; beyond, 503 at once.
    pub signing_queue: usize,
    /// The async runtime's worker threads (default: one per core). Fewer
    /// than the cores leaves a core to whatever shares the host (a sidecar,
    /// a load generator): on a small host that shortens the latency tail.
    pub worker_threads: usize,
}

impl Limits {
    pub(super) fn from_file(f: &FileServer) -> Result<Limits, ConfigError> {
        let count = |field: &str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(invalid(field, "must be at least 1")),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let time =
            |field: &str, v: &Option<String>, default: u64| -> Result<Duration, ConfigError> {
                let d = match v {
                    Some(text) => parse_duration(field, text)?,
                    None => Duration::from_secs(default),
                };
                if d.is_zero() {
                    return Err(invalid(field, "must be at least 1s"));
                }
                Ok(d)
            };
        Ok(Limits {
            max_connections: count("server.max_connections", f.max_connections, 10_000)?,
            admin_max_connections: count(
                "server.admin_max_connections",
                f.admin_max_connections,
                256,
            )?,
            header_timeout: time("server.header_timeout", &f.header_timeout, 10)?,
            request_timeout: time("server.request_timeout", &f.request_timeout, 30)?,
            signing_concurrency: count(
                "server.signing_concurrency",
                f.signing_concurrency,
                // Half the cores: the other half keeps serving the JWKS during a flood.
                std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            )?,
            signing_queue: f.signing_queue.unwrap_or(1024),
            worker_threads: count(
                "server.worker_threads",
                f.worker_threads,
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )?,
        })
    }
}
