//! `signet serve`.

use std::sync::Arc;

use super::{CliError, open_as};
use crate::clock::Clock;
use crate::config::{Config, IssuerSource};
use crate::http::AppState;
use crate::http::auth::{AdminTokens, TokenSource};
use crate::server::{Listeners, run as serve, shutdown_signal};

pub(super) fn run(
    mut config: Config,
    env: &dyn Fn(&str) -> Option<String>,
    clock: Arc<dyn Clock>,
) -> Result<(), CliError> {
    crate::server::fit_descriptors(&mut config.server.limits);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.limits.worker_threads)
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the runtime: {e}")))?;
    let bind = |addr| {
        runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| CliError::Usage(format!("cannot listen on {addr}: {e}")))
    };
    let listeners = Listeners {
        public: bind(config.server.public_addr)?,
        admin: bind(config.server.admin_addr)?,
    };
    let (public, admin) = (listeners.public.local_addr(), listeners.admin.local_addr());
    if let (Ok(public), Ok(admin)) = (public, admin) {
        // Port 0 becomes a real port: a default issuer follows it.
        config.set_public_addr(public);
        config.server.admin_addr = admin;
    }
    if config.issuer_source == IssuerSource::ServeAddress {
        tracing::warn!(
            issuer = %config.issuer,
            "issuer is not set, so it follows this server's public address; a token signed by another signet command (which reads server.public_addr instead) names another issuer and is refused here: set issuer (or SIGNET_ISSUER)"
        );
    }
    let service = open_as(config, env, clock, true)?;
    check_token(&service);
    // Bootstrap or catch up before serving, so /readyz is true from the start.
    // A purpose that fails is logged and reported by /readyz; the others serve.
    if let Err(e) = service.tick() {
        tracing::error!(error = %e, "a keyring could not be brought up to date; /readyz names the purpose");
    }
    let config = service.config().clone();
    if config.store.database_url.is_some() && env("SIGNET_ADMIN_TOKENS").is_none() {
        return Err(CliError::Usage(
            "the postgres store needs SIGNET_ADMIN_TOKENS (replicas share no directory for a development token)".into(),
        ));
    }
    let (tokens, source) =
        AdminTokens::load(env("SIGNET_ADMIN_TOKENS").as_deref(), &config.store.path)
            .map_err(CliError::Usage)?;
    match source {
        TokenSource::Created(path) => tracing::warn!(
            path = %path.display(),
            "no SIGNET_ADMIN_TOKENS: created a development admin token (role admin); read it from this file, and set SIGNET_ADMIN_TOKENS in production"
        ),
        TokenSource::File(path) => {
            tracing::info!(path = %path.display(), "admin token from file (development setup)")
        }
        TokenSource::Environment => {}
    }
    // Before "listening": a SIGTERM from then on is a graceful shutdown.
    let shutdown = {
        let _inside = runtime.enter();
        shutdown_signal()
    };
    tracing::info!(
        public = %config.server.public_addr,
        admin = %config.server.admin_addr,
        issuer = %config.issuer,
        store = %service.describe_store(),
        "listening"
    );
    let state = AppState::new(Arc::new(service), tokens);
    runtime
        .block_on(serve(listeners, state, shutdown))
        .map_err(|e| CliError::Usage(format!("server error: {e}")))
}

/// Logs in to the PKCS#11 token now, so that an absent token or a refused
/// PIN is in the log at start; serving goes on (the JWKS does not need it).
#[cfg(feature = "pkcs11")]
fn check_token(service: &crate::service::KeyService) {
    if let Some(token) = service.token() {
        match token.check() {
            Ok(()) => {
                tracing::info!(token = token.label(), "PKCS#11 token ready");
                // Objects whose destruction failed before this start.
                service.sweep_token();
            }
            Err(e) => {
                tracing::error!(error = %e, "the PKCS#11 token cannot be used: the JWKS is served, signing with its keys answers 503 until it can")
            }
        }
    }
}

#[cfg(not(feature = "pkcs11"))]
fn check_token(_: &crate::service::KeyService) {}
