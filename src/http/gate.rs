//! Bounded signing. A flood of signing requests (RSA above all: about half a
//! millisecond of CPU each) must not take the threads that serve the JWKS.
//! At most `signing_concurrency` signatures run at once, RSA ones on the
//! blocking pool, never on the async workers; at most `signing_queue` more
//! wait, and beyond that a request is answered 503 with `Retry-After` at once.

use tokio::sync::Semaphore;

use super::ApiError;

/// The signing gate: a running budget and a waiting room.
#[derive(Debug)]
pub struct SignGate {
    running: Semaphore,
    admitted: Semaphore,
}

impl SignGate {
    /// A gate letting `concurrency` signatures run and `queue` more wait.
    pub fn new(concurrency: usize, queue: usize) -> SignGate {
        SignGate {
            running: Semaphore::new(concurrency.max(1)),
            admitted: Semaphore::new(concurrency.max(1) + queue),
        }
    }

    /// Runs `job` when a slot is free: on the blocking pool if `heavy`, else
    /// in place. [`ApiError::Busy`] at once if the waiting room is full.
    pub async fn run<T: Send + 'static>(
        &self,
        heavy: bool,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _admitted = self.admitted.try_acquire().map_err(|_| ApiError::Busy)?;
        let _running = self.running.acquire().await.map_err(|_| ApiError::Busy)?;
        if heavy {
            tokio::task::spawn_blocking(job)
                .await
                .map_err(|e| ApiError::Internal(format!("signing task failed: {e}")))
        } else {
            Ok(job())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_full_waiting_room_answers_busy_at_once_and_frees_up() {
        let gate = Arc::new(SignGate::new(1, 1));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = Arc::new(std::sync::Mutex::new(hold));
        // One job runs (blocked on the channel), one waits for it.
        let blocked =
            |gate: Arc<SignGate>, hold: Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>| {
                tokio::spawn(async move {
                    gate.run(true, move || hold.lock().unwrap().recv().unwrap())
                        .await
                })
            };
        let first = blocked(gate.clone(), hold.clone());
        while gate.running.available_permits() != 0 {
            tokio::task::yield_now().await;
        }
        let second = blocked(gate.clone(), hold.clone());
        while gate.admitted.available_permits() != 0 {
            tokio::task::yield_now().await;
        }
        // The third is turned away without waiting.
        assert!(matches!(gate.run(false, || ()).await, Err(ApiError::Busy)));
        release.send(()).unwrap();
        release.send(()).unwrap();
        assert!(first.await.unwrap().is_ok());
        assert!(second.await.unwrap().is_ok());
        assert!(gate.run(false, || 7).await.is_ok_and(|v| v == 7));
    }
}
