//! Bearer tokens of the admin API: `SIGNET_ADMIN_TOKENS="name:role:token,..."`.
//!
//! Only SHA-256 digests of the tokens are kept, and a presented token is
//! compared with every configured digest in constant time. Tokens are never
//! logged; only their names are.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::crypto::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::clock::UnixTime;
use crate::keys::jwk::b64;

/// The file holding the development admin token inside the keys directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Sign and verify tokens.
    Signer,
    /// Everything, including key management.
    Admin,
}

struct Entry {
    name: String,
    role: Role,
    digest: [u8; 32],
}

/// The configured admin tokens (digests only).
pub struct AdminTokens {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for AdminTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<(&str, Role)> = self
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.role))
            .collect();
        write!(f, "AdminTokens({names:?}, <redacted>)")
    }
}

/// Where the admin tokens came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `SIGNET_ADMIN_TOKENS`.
    Environment,
    /// An existing `keys/admin.token`.
    File(PathBuf),
    /// A `keys/admin.token` created just now.
    Created(PathBuf),
}

fn digest(token: &[u8]) -> [u8; 32] {
    let d = crate::crypto::digest::digest(&crate::crypto::digest::SHA256, token);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl AdminTokens {
    /// Parses `name:role:token,...`. Errors name the entry, never the token.
    pub fn parse(text: &str) -> Result<AdminTokens, String> {
        let mut entries = Vec::new();
        for (i, item) in text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            let mut parts = item.splitn(3, ':');
            let (Some(name), Some(role), Some(token)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "SIGNET_ADMIN_TOKENS entry {} is not name:role:token",
                    i + 1
                ));
            };
            let role = match role {
                "admin" => Role::Admin,
                "signer" => Role::Signer,
                other => {
                    return Err(format!(
                        "SIGNET_ADMIN_TOKENS entry {} ({name}) has role {other:?}; use admin or signer",
                        i + 1
                    ));
                }
            };
            // The presented header is visible ASCII, trimmed: a token with
            // spaces or other characters could never match. Refuse it now.
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "SIGNET_ADMIN_TOKENS entry {} ({name}): the token contains whitespace or characters outside visible ASCII, so no client could ever present it; use e.g. `openssl rand -base64 32`",
                    i + 1
                ));
            }
            if token.len() < 16 {
                return Err(format!(
                    "SIGNET_ADMIN_TOKENS entry {} ({name}): the token must be at least 16 characters (e.g. `openssl rand -base64 32`)",
                    i + 1
                ));
            }
            entries.push(Entry {
                name: name.to_owned(),
                role,
                digest: digest(token.as_bytes()),
            });
        }
        if entries.is_empty() {
            return Err("SIGNET_ADMIN_TOKENS is set but empty".into());
        }
        Ok(AdminTokens { entries })
    }

    /// The tokens from `SIGNET_ADMIN_TOKENS`, else `dir/admin.token`
    /// (role admin), creating it (mode 0600) with a random token if missing.
    pub fn load(env: Option<&str>, dir: &Path) -> Result<(AdminTokens, TokenSource), String> {
        if let Some(text) = env {
            return Ok((AdminTokens::parse(text)?, TokenSource::Environment));
        }
        let path = dir.join(ADMIN_TOKEN_FILE);
        let single = |token: &str| AdminTokens {
            entries: vec![Entry {
                name: "dev".into(),
                role: Role::Admin,
                digest: digest(token.trim().as_bytes()),
            }],
        };
        match fs::read_to_string(&path) {
            Ok(token) => {
                let token = Zeroizing::new(token);
                if token.trim().is_empty() {
                    return Err(format!(
                        "{} is empty: delete it to generate a new token",
                        path.display()
                    ));
                }
                Ok((single(&token), TokenSource::File(path)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                SystemRandom::new()
                    .fill(&mut bytes[..])
                    .map_err(|_| "the system random number generator failed".to_owned())?;
                let token = Zeroizing::new(b64(&bytes[..]));
                let write = || -> std::io::Result<()> {
                    let mut f = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&path)?;
                    f.write_all(token.as_bytes())?;
                    f.sync_all()
                };
                write().map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                Ok((single(&token), TokenSource::Created(path)))
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// The name and role of the presented token, if it is configured. Every
    /// configured digest is compared, in constant time.
    pub fn authenticate(&self, presented: &str) -> Option<(&str, Role)> {
        let d = digest(presented.as_bytes());
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&d)) {
                found = Some((e.name.as_str(), e.role));
            }
        }
        found
    }
}

/// Failed authentications a client address may make per window before its
/// requests are refused without looking at the token.
pub const MAX_FAILURES: u32 = 10;
/// The window, in seconds.
pub const FAILURE_WINDOW: u64 = 60;
/// Addresses tracked at most; beyond, expired windows are dropped first and
/// then the oldest, so memory stays bounded under a spread-out attack.
const MAX_TRACKED: usize = 10_000;

/// Failed admin authentications by client address: a guesser is slowed to
/// [`MAX_FAILURES`] tries per [`FAILURE_WINDOW`].
#[derive(Debug, Default)]
pub struct AuthFailures {
    windows: Mutex<HashMap<IpAddr, (UnixTime, u32)>>,
    /// Addresses tracked: zero on a quiet system, so requests skip the lock.
    tracked: AtomicUsize,
}

impl AuthFailures {
    /// Seconds `ip` must wait at `now`, if it used up its failures.
    pub fn blocked(&self, ip: IpAddr, now: UnixTime) -> Option<u64> {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let &(start, failures) = windows.get(&ip)?;
        let ends = start.0.saturating_add(FAILURE_WINDOW);
        (failures >= MAX_FAILURES && now.0 < ends).then(|| ends - now.0)
    }

    /// Counts a failure of `ip` at `now`.
    pub fn record(&self, ip: IpAddr, now: UnixTime) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&ip) {
            windows.retain(|_, (start, _)| start.0.saturating_add(FAILURE_WINDOW) > now.0);
            if windows.len() >= MAX_TRACKED
                && let Some(oldest) = windows
                    .iter()
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(ip, _)| *ip)
            {
                windows.remove(&oldest);
            }
        }
        let entry = windows.entry(ip).or_insert((now, 0));
        if entry.0.0.saturating_add(FAILURE_WINDOW) <= now.0 {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        self.tracked.store(windows.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_authenticate() {
        let t = AdminTokens::parse(
            "ci:admin:0123456789abcdef-admin, issuer:signer:0123456789abcdef-signer",
        )
        .unwrap();
        assert_eq!(
            t.authenticate("0123456789abcdef-admin"),
            Some(("ci", Role::Admin))
        );
        assert_eq!(
            t.authenticate("0123456789abcdef-signer"),
            Some(("issuer", Role::Signer))
        );
        assert_eq!(t.authenticate("0123456789abcdef-other"), None);
        assert_eq!(t.authenticate(""), None);
        for bad in [
            "x",
            "a:root:0123456789abcdef",
            "a:admin:short",
            "a:admin: 0123456789abcdef",
            "a:admin:0123456789 abcdef",
            "a:admin:0123456789abcdéf",
        ] {
            let e = AdminTokens::parse(bad).unwrap_err();
            assert!(
                !e.contains("0123456789") && !e.contains("short"),
                "the token leaked: {e}"
            );
        }
        let e = AdminTokens::parse("a:admin:0123456789 abcdef").unwrap_err();
        assert!(
            e.contains("whitespace or characters outside visible ASCII"),
            "{e}"
        );
    }

    #[test]
    fn failures_are_limited_per_address_and_window() {
        let f = AuthFailures::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = UnixTime(1_000);
        assert_eq!(f.blocked(a, t0), None);
        for _ in 0..MAX_FAILURES {
            assert_eq!(f.blocked(a, t0), None);
            f.record(a, t0);
        }
        assert_eq!(f.blocked(a, UnixTime(1_010)), Some(FAILURE_WINDOW - 10));
        assert_eq!(f.blocked(b, t0), None, "another address is not affected");
        assert_eq!(f.blocked(a, UnixTime(1_000 + FAILURE_WINDOW)), None);
        f.record(a, UnixTime(1_000 + FAILURE_WINDOW));
        assert_eq!(
            f.blocked(a, UnixTime(1_000 + FAILURE_WINDOW)),
            None,
            "a new window"
        );
    }
}
