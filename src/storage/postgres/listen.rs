//! Change notifications from the PostgreSQL store: a thread LISTENs on a
//! connection of its own, so a replica refreshes as soon as another commits
//! (polling stays the truth: a lost notification only costs latency).

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use super::conn::{CHANNEL, Target};

/// LISTENs on a connection of its own, for ever: on a notification, calls
/// `on_change`; on a broken connection, reconnects after a wait that
/// doubles from 250 ms to 5 s while the database stays away. Notifications
/// sent meanwhile are lost; the next poll covers them.
pub(super) fn listen(target: &Target, on_change: Box<dyn Fn(&str) + Send + Sync>) {
    const FIRST: Duration = Duration::from_millis(250);
    let describe = &target.describe;
    let mut logged = false;
    let mut wait = FIRST;
    loop {
        let attempt = target.connect().and_then(|mut client| {
            client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
            wait = FIRST;
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
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
