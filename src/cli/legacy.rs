//! `signet keys import-hmac` and the lines that list legacy HMAC secrets.

use super::stdout::out;
use zeroize::Zeroizing;

use super::CliError;
use super::dotenv::DotEnv;
use crate::config::parse_duration;
use crate::service::{KeyService, LegacyInfo, LegacySecret};

/// `keys import-hmac`: what to import and from where.
pub(super) struct Import<'a> {
    pub(super) purpose: &'a str,
    pub(super) names: &'a [String],
    pub(super) env_file: Option<&'a std::path::Path>,
    pub(super) window: Option<&'a str>,
    pub(super) issuer: Option<String>,
}

impl Import<'_> {
    /// The secrets' values, from the `.env` file or the environment, in the
    /// order given. A variable that is missing or empty is an error naming
    /// it and where it was looked for.
    pub(super) fn read(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<LegacySecret>, CliError> {
        let file = self
            .env_file
            .map(DotEnv::read)
            .transpose()
            .map_err(CliError::Usage)?;
        let place = match self.env_file {
            Some(p) => p.display().to_string(),
            None => "the environment".to_owned(),
        };
        let mut out: Vec<LegacySecret> = Vec::new();
        for name in self.names {
            if out.iter().any(|s| &s.label == name) {
                return Err(CliError::Usage(format!(
                    "--secret-env {name} is given twice"
                )));
            }
            let value = match &file {
                Some(f) => f.get(name).map(|v| Zeroizing::new(v.as_bytes().to_vec())),
                None => env(name).map(|v| Zeroizing::new(v.into_bytes())),
            };
            let secret = value.ok_or_else(|| {
                CliError::Usage(format!(
                    "{name} is not set in {place}: check the name (--secret-env NAME)"
                ))
            })?;
            if secret.is_empty() {
                return Err(CliError::Usage(format!(
                    "{name} is empty in {place}: there is no secret to import"
                )));
            }
            out.push(LegacySecret {
                label: name.clone(),
                secret,
            });
        }
        Ok(out)
    }
}

pub(super) fn import_hmac(
    import: &Import<'_>,
    secrets: Vec<LegacySecret>,
    service: KeyService,
) -> Result<(), CliError> {
    let window = import
        .window
        .map(|w| parse_duration("--window", w))
        .transpose()?;
    let legacy = service.import_legacy(import.purpose, &secrets, window, import.issuer.clone())?;
    for s in &secrets {
        if s.secret.len() < 32 {
            eprintln!(
                "signet: warning: {} is {} bytes long; imported as it is (it is what signed the tokens), but replace it soon: signet's keys replace it",
                s.label,
                s.secret.len()
            );
        }
    }
    print_legacy(&legacy);
    Ok(())
}

/// `config check`'s lines on legacy HMAC secrets: which are still verified,
/// until when (the secrets themselves never).
pub(super) fn print_legacy_check(service: Result<Option<KeyService>, CliError>) {
    let service = match service {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            out!("# legacy HMAC secrets: cannot read the store to list them: {e}");
            return;
        }
    };
    let legacy = service.legacy_of(None);
    if legacy.is_empty() {
        return;
    }
    out!("# legacy HMAC secrets (verify only; delete them from .env once expired):");
    for l in legacy {
        out!(
            "#   {} {}: {} until {}",
            l.purpose,
            l.legacy,
            l.state,
            l.expires_at
        );
    }
}

pub(super) fn print_legacy(legacy: &[LegacyInfo]) {
    if legacy.is_empty() {
        return;
    }
    out!(
        "\n{:<43}  {:<20}  {:<11}  {:<20}  {:<20}  ISSUER",
        "LEGACY HMAC SECRET (verify only)",
        "PURPOSE",
        "STATE",
        "IMPORTED",
        "EXPIRES"
    );
    for l in legacy {
        out!(
            "{:<43}  {:<20}  {:<11}  {:<20}  {:<20}  {}",
            l.legacy,
            l.purpose,
            l.state,
            l.imported_at,
            l.expires_at,
            l.issuer.as_deref().unwrap_or("-")
        );
    }
}
