//! The configuration file as written: every field optional, unknown fields refused.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigError, PurposeConfig, SignerKind, invalid, parse_duration};
use crate::keys::{Algorithm, RSA_BITS, Schedule, default_typ};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub(super) issuer: Option<String>,
    pub(super) leeway: Option<String>,
    #[serde(default)]
    pub(super) server: FileServer,
    #[serde(default)]
    pub(super) jwks: FileJwks,
    #[serde(default)]
    pub(super) store: FileStore,
    #[serde(default)]
    pub(super) signer: FileSigner,
    #[serde(default)]
    pub(super) purposes: BTreeMap<String, FilePurpose>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSigner {
    pub(super) kind: Option<String>,
    pub(super) module: Option<String>,
    pub(super) token_label: Option<String>,
    pub(super) slot: Option<u64>,
    pub(super) sessions: Option<usize>,
    /// Refused with a pointer to `SIGNET_PKCS11_PIN`.
    pub(super) pin: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServer {
    pub(super) public_addr: Option<String>,
    pub(super) admin_addr: Option<String>,
    pub(super) max_connections: Option<usize>,
    pub(super) admin_max_connections: Option<usize>,
    pub(super) header_timeout: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) signing_concurrency: Option<usize>,
    pub(super) signing_queue: Option<usize>,
    pub(super) worker_threads: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileJwks {
    pub(super) max_age: Option<String>,
    pub(super) revocations_max_age: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStore {
    pub(super) kind: Option<String>,
    pub(super) path: Option<String>,
    pub(super) url: Option<String>,
    pub(super) poll_interval: Option<String>,
    pub(super) clock_skew: Option<String>,
    pub(super) listen: Option<bool>,
    pub(super) state_file: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePurpose {
    pub(super) enabled: Option<bool>,
    pub(super) algorithms: Option<Vec<String>>,
    pub(super) token_ttl: Option<String>,
    pub(super) rotate: Option<String>,
    pub(super) typ: Option<String>,
    pub(super) rsa_bits: Option<u32>,
    pub(super) discovery: Option<bool>,
    pub(super) single_use: Option<bool>,
    pub(super) signer: Option<String>,
}

/// Built-in purposes: (name, algorithm, token_ttl); `typ` from [`default_typ`].
const DEFAULT_PURPOSES: [(&str, &str, &str); 4] = [
    ("access_token", "RS256", "10m"),
    ("refresh_token", "EdDSA", "7d"),
    ("magic_link", "EdDSA", "15m"),
    ("reset_password_link", "EdDSA", "1h"),
];
const DEFAULT_ROTATE: &str = "0 0 0 1 * *";

/// The built-in purposes' names.
pub(super) const BUILT_IN: [&str; 4] = [
    DEFAULT_PURPOSES[0].0,
    DEFAULT_PURPOSES[1].0,
    DEFAULT_PURPOSES[2].0,
    DEFAULT_PURPOSES[3].0,
];

fn valid_purpose_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn purpose(
    name: &str,
    p: FilePurpose,
    d: FilePurpose,
    signer: SignerKind,
) -> Result<PurposeConfig, ConfigError> {
    let f = |k: &str| format!("purposes.{name}.{k}");
    let signer = match p.signer {
        None => signer,
        Some(text) => match SignerKind::parse(&f("signer"), &text)? {
            SignerKind::Pkcs11 if signer == SignerKind::Software => {
                return Err(invalid(
                    f("signer"),
                    "\"pkcs11\" needs the token configured: set [signer] kind = \"pkcs11\" with its module and token_label",
                ));
            }
            kind => kind,
        },
    };
    let names = p.algorithms.or(d.algorithms).unwrap_or_default();
    let mut algorithms = Vec::new();
    for a in &names {
        let alg: Algorithm = a
            .parse()
            .map_err(|e| invalid(f("algorithms"), format!("{e}")))?;
        if algorithms.contains(&alg) {
            return Err(invalid(f("algorithms"), format!("{a} is listed twice")));
        }
        algorithms.push(alg);
    }
    if algorithms.is_empty() {
        return Err(invalid(
            f("algorithms"),
            "list at least one of EdDSA, RS256, PS256, ES256",
        ));
    }
    let token_ttl = parse_duration(
        &f("token_ttl"),
        &p.token_ttl.or(d.token_ttl).unwrap_or_default(),
    )?;
    if token_ttl.is_zero() {
        return Err(invalid(f("token_ttl"), "must be at least 1s"));
    }
    let rotate = Schedule::parse(&p.rotate.or(d.rotate).unwrap_or_default())
        .map_err(|e| invalid(f("rotate"), e.to_string()))?;
    let typ = p.typ.or(d.typ).unwrap_or_default();
    if typ.is_empty() || !typ.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            f("typ"),
            format!("{typ:?} must be a non-empty media type, e.g. \"at+jwt\""),
        ));
    }
    let rsa_bits = p.rsa_bits.or(d.rsa_bits).unwrap_or(2048);
    if !RSA_BITS.contains(&rsa_bits) {
        return Err(invalid(
            f("rsa_bits"),
            format!("{rsa_bits} is not one of 2048, 3072, 4096"),
        ));
    }
    Ok(PurposeConfig {
        algorithms,
        token_ttl,
        rotate,
        typ,
        rsa_bits,
        discovery: p.discovery.or(d.discovery).unwrap_or(false),
        single_use: p.single_use.or(d.single_use).unwrap_or(false),
        signer,
    })
}

/// The effective purposes: the built-ins with the file's changes, then the file's own.
pub(super) fn purposes(
    mut written: BTreeMap<String, FilePurpose>,
    signer: SignerKind,
) -> Result<BTreeMap<String, PurposeConfig>, ConfigError> {
    let mut purposes = BTreeMap::new();
    for (name, alg, ttl) in DEFAULT_PURPOSES {
        let p = written.remove(name).unwrap_or_default();
        if p.enabled == Some(false) {
            continue;
        }
        let defaults = FilePurpose {
            enabled: None,
            algorithms: Some(vec![alg.to_owned()]),
            token_ttl: Some(ttl.to_owned()),
            rotate: Some(DEFAULT_ROTATE.to_owned()),
            typ: Some(default_typ(name)),
            rsa_bits: Some(2048),
            // Third parties verify access tokens; the issuer verifies the rest.
            discovery: Some(name == "access_token"),
            // A link is meant to be followed once.
            single_use: Some(matches!(name, "magic_link" | "reset_password_link")),
            signer: None,
        };
        purposes.insert(name.to_owned(), purpose(name, p, defaults, signer)?);
    }
    for (name, p) in written {
        if p.enabled == Some(false) {
            continue;
        }
        if !valid_purpose_name(&name) {
            return Err(invalid(
                format!("purposes.{name}"),
                "purpose names use lower-case letters, digits and '_' (at most 64), e.g. \"api_key\"",
            ));
        }
        if p.token_ttl.is_none() {
            return Err(invalid(
                format!("purposes.{name}.token_ttl"),
                "required for a purpose signet does not define; e.g. token_ttl = \"15m\"",
            ));
        }
        let defaults = FilePurpose {
            enabled: None,
            algorithms: Some(vec!["EdDSA".to_owned()]),
            token_ttl: None,
            rotate: Some(DEFAULT_ROTATE.to_owned()),
            typ: Some(default_typ(&name)),
            rsa_bits: Some(2048),
            discovery: Some(false),
            single_use: Some(false),
            signer: None,
        };
        purposes.insert(name.clone(), purpose(&name, p, defaults, signer)?);
    }
    Ok(purposes)
}
