//! `signet config check`: the effective configuration, where each secret
//! comes from (never the secret), whether the PKCS#11 token can be used, and
//! the legacy HMAC secrets still verified.

use super::stdout::{out, out_raw};
use std::sync::Arc;

use super::{ADMIN_TOKEN_FILE, CliError, MASTER_KEY_FILE, legacy, open_read_only};
use crate::clock::Clock;
use crate::config::Config;
use crate::service::KeyService;

pub(super) fn run(
    config: Config,
    env: &dyn Fn(&str) -> Option<String>,
    clock: Arc<dyn Clock>,
) -> Result<(), CliError> {
    out_raw!("{}", config.to_toml());
    let master = if env("SIGNET_MASTER_KEYS").is_some() {
        "SIGNET_MASTER_KEYS (set, redacted)".to_owned()
    } else {
        format!("{}", config.store.path.join(MASTER_KEY_FILE).display())
    };
    let admin = if env("SIGNET_ADMIN_TOKENS").is_some() {
        "SIGNET_ADMIN_TOKENS (set, redacted)".to_owned()
    } else {
        format!("{}", config.store.path.join(ADMIN_TOKEN_FILE).display())
    };
    out!("\n# secrets\n# master keys: {master}\n# admin tokens: {admin}");
    if config.store.database_url.is_some() {
        out!("# database: SIGNET_DATABASE_URL (set, redacted)");
    }
    let pkcs11 = config.signer.pkcs11.clone();
    let service = open_read_only(config, env, clock);
    if let Some(pkcs11) = &pkcs11 {
        out!(
            "# PKCS#11 PIN: SIGNET_PKCS11_PIN (set, redacted) for token {}",
            pkcs11.token
        );
        let opened = service.as_ref().ok().and_then(Option::as_ref);
        out!("# PKCS#11 token: {}", check_token(pkcs11, opened));
    }
    legacy::print_legacy_check(service);
    Ok(())
}

/// Logs in to the token once: with the token the service opened (a PIN it
/// had refused is not offered again), or, with no keyring to open, on its own.
#[cfg(feature = "pkcs11")]
fn check_token(config: &crate::config::Pkcs11Config, service: Option<&KeyService>) -> String {
    let checked = match service.and_then(KeyService::token) {
        Some(token) => token.check(),
        None => crate::pkcs11::Token::open(config).and_then(|t| t.check()),
    };
    match checked {
        Ok(()) => "found, logged in".to_owned(),
        Err(e) => format!("cannot be used: {e}"),
    }
}

#[cfg(not(feature = "pkcs11"))]
fn check_token(_: &crate::config::Pkcs11Config, _: Option<&KeyService>) -> String {
    "this build has no PKCS#11 support".to_owned()
}
