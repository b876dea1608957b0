//! `signet serve`: the public and admin listeners and the scheduler, with
//! graceful shutdown.
//!
//! Each listener runs its own accept loop rather than `axum::serve`, so that
//! what one client can hold is bounded: a cap on concurrent connections per
//! listener (at the cap, new connections wait in the kernel's backlog while
//! open ones are served; the admin listener has its own budget), a timeout
//! for a complete request head (which also closes idle keep-alive
//! connections), and a timeout for a whole request. The file-descriptor limit
//! is raised at start and the caps leave a reserve, so the store can always
//! open its files.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::config::Limits;
use crate::http::{ApiError, AppState, admin_router, public_router};

/// Descriptors kept free of connections: keyring files, the lock file, the
/// log, and the runtime's own.
pub const FD_RESERVE: u64 = 128;
/// How long in-flight requests may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// The two bound listeners.
#[derive(Debug)]
pub struct Listeners {
    /// JWKS, discovery, health.
    pub public: TcpListener,
    /// Signing, key management, metrics.
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
    let limits = state.service.config().server.limits.clone();
    let scheduled = crate::scheduler::Scheduled {
        service: state.service.clone(),
        metrics: state.metrics.clone(),
    };
    let scheduler = tokio::spawn(crate::scheduler::run(scheduled, stop_rx.clone()));
    let public = serve(
        listeners.public,
        public_router(state.clone()),
        limits.max_connections,
        &limits,
        stop_rx.clone(),
    );
    let admin = serve(
        listeners.admin,
        admin_router(state),
        limits.admin_max_connections,
        &limits,
        stop_rx,
    );
    tokio::join!(public, admin);
    let _ = scheduler.await;
    Ok(())
}

/// One listener's accept loop, until `stop` turns true.
async fn serve(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    limits: &Limits,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let request_timeout = limits.request_timeout;
    loop {
        // A permit first: at the cap, new connections stay in the backlog.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept:
                    // back off briefly rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let router = router.clone();
            async move {
                match tokio::time::timeout(request_timeout, router.oneshot(req)).await {
                    Ok(response) => response,
                    Err(_) => Ok::<_, Infallible>(ApiError::Timeout.into_response()),
                }
            }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(permit);
        });
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN) => tracing::warn!("connections still open after the drain period; closing them"),
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, logs both, and lowers
/// the connection caps if they and [`FD_RESERVE`] would not fit in it.
pub fn fit_descriptors(limits: &mut Limits) {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            match rlimit::getrlimit(rlimit::Resource::NOFILE) {
                Ok((soft, _)) => soft,
                Err(_) => return,
            }
        }
    };
    let hard = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(soft, |(_, hard)| hard);
    tracing::info!(soft, hard, "open-file limit");
    let admin = limits.admin_max_connections as u64;
    let room = soft.saturating_sub(FD_RESERVE);
    if admin + limits.max_connections as u64 > room {
        let admin_fit = admin.min(room / 4).max(1);
        let public_fit = room.saturating_sub(admin_fit).max(1);
        tracing::warn!(
            soft,
            public = public_fit,
            admin = admin_fit,
            "the open-file limit is too low for the configured connection caps; lowered them to keep descriptors for the store"
        );
        limits.max_connections = usize::try_from(public_fit).unwrap_or(1);
        limits.admin_max_connections = usize::try_from(admin_fit).unwrap_or(1);
    }
}

/// Registers the SIGINT and SIGTERM handlers now, and returns what completes
/// on the first of them. Call it (inside the runtime) before saying
/// "listening": a signal sent as soon as a supervisor sees that line is then
/// a graceful shutdown, not the default action that kills the process.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    async fn delivered(s: Option<Signal>) {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    async move {
        tokio::select! {
            _ = delivered(term) => {},
            _ = delivered(int) => {},
        }
        tracing::info!("shutting down");
    }
}
