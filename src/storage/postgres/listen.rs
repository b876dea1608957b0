//! Change notifications from the PostgreSQL store: a thread LISTENs on a
//! connection of its own, so a replica refreshes as soon as another commits
//! (polling stays the truth: a lost notification only costs latency).

use postgres::fallible_iterator::FallibleIterator;

use super::conn::{CHANNEL, Target};

/// LISTENs on a connection of its own, for ever: on a notification, calls
/// `on_change`; on a broken connection, reconnects after a second.
pub(super) fn listen(target: &Target, on_change: Box<dyn Fn(&str) + Send + Sync>) {
    let describe = &target.describe;
    let mut logged = false;
    loop {
        let attempt = target.connect().and_then(|mut client| {
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
