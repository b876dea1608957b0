//! Scheduled rotation: a cron job per purpose on its `rotate` schedule, plus a
//! periodic check every `store.poll_interval`.
//!
//! Neither decides anything: each asks the lifecycle core what is due, applies
//! it through the store (under its lock, on the blocking pool) and refreshes
//! the snapshot. The periodic check also picks up changes other processes made
//! and retries after a failure; the server keeps serving the keys it has.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::metrics::Metrics;
use crate::service::KeyService;

/// What the scheduler works with: the key service, and metrics to count in.
#[derive(Clone, Debug)]
pub struct Scheduled {
    /// The key service.
    pub service: Arc<KeyService>,
    /// Where rotations are counted.
    pub metrics: Arc<Metrics>,
}

/// Runs until `stop` turns true.
pub async fn run(state: Scheduled, mut stop: watch::Receiver<bool>) {
    let mut cron = match start_cron(&state).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the rotation schedule; relying on the periodic check");
            None
        }
    };
    let mut every = tokio::time::interval(state.service.config().store.poll_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Another process's commit, as the store reports it: refresh the
    // purposes it names at once.
    let changed = Arc::new(tokio::sync::Notify::new());
    let named: Arc<std::sync::Mutex<BTreeSet<String>>> = Arc::default();
    if state.service.config().store.listen {
        let (hint, names) = (changed.clone(), named.clone());
        state.service.watch(Box::new(move |purpose: &str| {
            names
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(purpose.to_owned());
            hint.notify_one();
        }));
    }
    loop {
        tokio::select! {
            _ = every.tick() => check(&state).await,
            _ = changed.notified() => {
                let purposes: Vec<String> = std::mem::take(
                    &mut *named.lock().unwrap_or_else(|e| e.into_inner()),
                )
                .into_iter()
                .collect();
                refresh_only(&state, purposes).await;
            }
            _ = stop.changed() => break,
        }
    }
    if let Some(c) = cron.as_mut() {
        let _ = c.shutdown().await;
    }
}

async fn start_cron(
    state: &Scheduled,
) -> Result<JobScheduler, tokio_cron_scheduler::JobSchedulerError> {
    let scheduler = JobScheduler::new().await?;
    for (purpose, p) in &state.service.config().purposes {
        let (state, purpose) = (state.clone(), purpose.clone());
        let job = Job::new_async(p.rotate.as_str(), move |_, _| {
            let (state, purpose) = (state.clone(), purpose.clone());
            Box::pin(async move {
                tracing::info!(purpose, "rotation boundary");
                tick(&state, &purpose).await;
                refresh(&state).await;
            })
        })?;
        scheduler.add(job).await?;
    }
    scheduler.start().await?;
    Ok(scheduler)
}

/// Applies what is due for every purpose, then refreshes the snapshot.
/// Picks up other processes' changes, then takes the store's lock only for
/// the purposes where something is due: an idle fleet costs the store reads
/// only.
pub async fn check(state: &Scheduled) {
    refresh(state).await;
    let mut ticked = false;
    for purpose in state.service.config().purposes.keys() {
        if state.service.is_due(purpose) {
            tick(state, purpose).await;
            ticked = true;
        }
    }
    if ticked {
        refresh(state).await;
    }
    prune(state).await;
}

/// Drops the revoked and consumed token ids whose tokens have all expired.
async fn prune(state: &Scheduled) {
    let service = state.service.clone();
    match tokio::task::spawn_blocking(move || service.prune_tokens()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot prune expired token ids; will retry"),
        Err(e) => tracing::error!(error = %e, "prune task failed"),
    }
}

async fn tick(state: &Scheduled, purpose: &str) {
    let (service, p) = (state.service.clone(), purpose.to_owned());
    match tokio::task::spawn_blocking(move || service.tick_purpose(&p)).await {
        Ok(Ok(false)) => {}
        Ok(Ok(true)) => state.metrics.rotation(purpose, true),
        Ok(Err(e)) => {
            state.metrics.rotation(purpose, false);
            tracing::error!(purpose, error = %e, "keyring update failed; will retry at the next check");
        }
        Err(e) => tracing::error!(purpose, error = %e, "keyring update task failed"),
    }
}

async fn refresh(state: &Scheduled) {
    let service = state.service.clone();
    match tokio::task::spawn_blocking(move || service.refresh()).await {
        Ok(true) => tracing::debug!("snapshot rebuilt"),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "reload task failed"),
    }
}

/// [`refresh`] of the purposes a change notification named.
async fn refresh_only(state: &Scheduled, purposes: Vec<String>) {
    let service = state.service.clone();
    match tokio::task::spawn_blocking(move || service.refresh_only(Some(&purposes))).await {
        Ok(true) => tracing::debug!("snapshot rebuilt"),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "reload task failed"),
    }
}
