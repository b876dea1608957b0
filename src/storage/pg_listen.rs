//! Change notifications from the PostgreSQL store: a thread LISTENs on a
//! connection of its own, so a replica refreshes as soon as another commits
//! (polling stays the truth: a lost notification only costs latency).

use postgres::fallible_iterator::FallibleIterator;

use super::pg_tls::Rustls;
use super::postgres::{CHANNEL, connect};

/// LISTENs on a connection of its own, for ever: on a notification, calls
/// `on_change`; on a broken connection, reconnects after a second.
pub(super) fn listen(
    config: postgres::Config,
    tls: Option<Rustls>,
    describe: String,
    on_change: Box<dyn Fn(&str) + Send + Sync>,
) {
    let mut logged = false;
    loop {
        let attempt = connect(&config, tls.as_ref()).and_then(|mut client| {
            client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
            if logged {
                tracing::info!(store = %describe, "listening for keyring changes again");
                logged = false;
            }
            let mut notifications = client.notifications();
            let mut iter = notifications.blocking_iter();
            while let Some(n) = iter.next()? {
                on_change(n.payload());
            }
            Ok(())
        });
        if let Err(e) = attempt
            && !logged
        {
            tracing::warn!(store = %describe, error = %e, "not listening for keyring changes; polling only until the database answers");
            logged = true;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
