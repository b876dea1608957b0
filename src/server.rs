//! `signet serve`: the public and admin listeners and the scheduler, with
//! graceful shutdown.

use std::future::Future;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::{AppState, admin_router, public_router};

/// The two bound listeners.
#[derive(Debug)]
pub struct Listeners {
    /// JWKS, discovery, health, metrics.
    pub public: TcpListener,
    /// Signing and key management.
    pub admin: TcpListener,
}

/// Serves until `shutdown` resolves; in-flight requests finish, the scheduler stops.
pub async fn run(
    listeners: Listeners,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let until = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let scheduler = tokio::spawn(crate::scheduler::run(state.clone(), stop_rx.clone()));
    let public = axum::serve(listeners.public, public_router(state.clone()))
        .with_graceful_shutdown(until(stop_rx.clone()));
    let admin = axum::serve(
        listeners.admin,
        admin_router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(until(stop_rx));
    let (a, b) = tokio::join!(public.into_future(), admin.into_future());
    let _ = scheduler.await;
    a.and(b)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
