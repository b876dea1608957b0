//! `signet serve`.

use std::sync::Arc;

use super::CliError;
use crate::http::AppState;
use crate::http::auth::{AdminTokens, TokenSource};
use crate::server::{Listeners, run as serve, shutdown_signal};
use crate::service::KeyService;

pub(super) fn run(
    service: KeyService,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), CliError> {
    let config = service.config().clone();
    // Bootstrap or catch up before listening, so /readyz is true from the start.
    service.tick()?;
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let bind = |addr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| CliError::Usage(format!("cannot listen on {addr}: {e}")))
        };
        let listeners = Listeners {
            public: bind(config.server.public_addr).await?,
            admin: bind(config.server.admin_addr).await?,
        };
        let (public, admin) = (listeners.public.local_addr(), listeners.admin.local_addr());
        if let (Ok(public), Ok(admin)) = (public, admin) {
            tracing::info!(%public, %admin, store = %config.store.path.display(), "listening");
        }
        let state = AppState::new(Arc::new(service), tokens);
        serve(listeners, state, shutdown_signal())
            .await
            .map_err(|e| CliError::Usage(format!("server error: {e}")))
    })
}
