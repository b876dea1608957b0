//! `signet keys ...` and `signet token ...`.

use super::stdout::out;
use serde_json::{Map, Value};

use super::legacy::print_legacy;
use super::{CliError, KeysCommand, TokenCommand};
use crate::config::{Config, parse_duration};
use crate::keys::Algorithm;
use crate::keys::token::VerifyError;
use crate::service::{KeyInfo, KeyService, ProblemKind, SignRequest};
use crate::verifier::Verifier;

pub(super) fn run(cmd: KeysCommand, service: KeyService) -> Result<(), CliError> {
    match cmd {
        KeysCommand::List { json } => list(Some(service), json),
        KeysCommand::Rotate { purpose, force } => {
            // Rotation applies what is due first, under the lock.
            let keys = service.rotate(purpose.as_deref(), force)?;
            print_keys(&keys, false);
            Ok(())
        }
        KeysCommand::Revoke { kid } => {
            let keys = service.revoke(&kid)?;
            print_keys(&keys, false);
            print_legacy(&service.legacy_of(None));
            Ok(())
        }
        KeysCommand::Authenticate => {
            let done = service.authenticate()?;
            if done.is_empty() {
                out!("every keyring is already authenticated");
            } else {
                out!("authenticated: {}", done.join(", "));
                print_keys(&service.keys_of(None), false);
            }
            Ok(())
        }
        KeysCommand::ImportHmac { .. } => Err(CliError::Usage(
            "import-hmac reads the environment: run it through `signet keys import-hmac`".into(),
        )),
        KeysCommand::Reencrypt => {
            let n = service.reencrypt()?;
            out!("re-encrypted {n} private key(s) under the newest master key");
            Ok(())
        }
    }
}

/// `keys list`: the keys that can be read, then what is broken, with exit 2.
pub(super) fn list(service: Option<KeyService>, json: bool) -> Result<(), CliError> {
    let Some(service) = service else {
        print_keys(&[], json);
        return Ok(());
    };
    let legacy = service.legacy_of(None);
    if json {
        let mut all = serde_json::to_value(service.keys_of(None)).unwrap_or_default();
        if let (Value::Array(list), Ok(Value::Array(more))) =
            (&mut all, serde_json::to_value(&legacy))
        {
            list.extend(more);
        }
        out!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
    } else {
        print_keys(&service.keys_of(None), false);
        print_legacy(&legacy);
    }
    // The keys that could be read are listed; what is broken (a keyring that
    // cannot be read, an active key that cannot sign) is reported after
    // them, with exit 2.
    let problems: Vec<_> = service
        .problems()
        .into_iter()
        .filter(|p| p.kind != ProblemKind::NoActiveKey)
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.purpose, p.detail))
        .collect();
    Err(CliError::Usage(lines.join("\nsignet: ")))
}

/// `token verify` against the store, as the issuer checks its own tokens.
pub(super) fn verify_local(
    service: &KeyService,
    purpose: &str,
    token: &str,
) -> Result<(), CliError> {
    if let Err(e) = service.config().purpose(purpose) {
        return Err(CliError::Usage(e.to_string()));
    }
    // A keyring that cannot be read or trusted is an error, not a verdict on the token.
    if let Some(p) = service
        .problems()
        .into_iter()
        .find(|p| p.purpose == purpose && p.kind == ProblemKind::Store)
    {
        return Err(CliError::Usage(p.detail));
    }
    let verified = service.verify(purpose, token.trim())?;
    let out = serde_json::to_string_pretty(&verified.claims).unwrap_or_default();
    out!("{out}");
    Ok(())
}

pub(super) fn run_token(cmd: TokenCommand, service: KeyService) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Sign(args) => {
            let claims: Map<String, Value> = serde_json::from_str(&args.claims)
                .map_err(|e| CliError::Usage(format!("--claims must be a JSON object: {e}")))?;
            let ttl = args
                .ttl
                .as_deref()
                .map(|t| parse_duration("--ttl", t))
                .transpose()?;
            let alg = args
                .alg
                .as_deref()
                .map(str::parse::<Algorithm>)
                .transpose()
                .map_err(|e| CliError::Usage(e.to_string()))?;
            // Bootstrap or catch up every purpose; only the one signing for
            // must succeed (the others' failures are theirs to report).
            for purpose in service.config().purposes.keys() {
                let result = service.tick_purpose(purpose);
                if *purpose == args.purpose {
                    result?;
                }
            }
            service.refresh();
            let signed = service.sign(SignRequest {
                purpose: args.purpose,
                claims,
                ttl,
                alg,
            })?;
            out!("{}", signed.token);
            Ok(())
        }
        TokenCommand::Verify { purpose, token, .. } => verify_local(&service, &purpose, &token),
    }
}

/// What `token verify --jwks-url` checks against.
pub(super) struct Remote<'a> {
    pub(super) purpose: &'a str,
    pub(super) url: &'a str,
    pub(super) issuer: Option<String>,
    pub(super) audience: Option<String>,
    pub(super) allow_http: bool,
}

/// `token verify --jwks-url`: the embedded verifier, against a running
/// server, as a service in any directory would use it.
pub(super) fn verify_remote(
    config: &Config,
    remote: Remote<'_>,
    token: &str,
) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the runtime: {e}")))?;
    let issuer = match remote.issuer {
        Some(iss) => iss,
        None => runtime.block_on(discover_issuer(remote.url))?,
    };
    let mut builder = Verifier::builder(remote.url)
        .issuer(issuer)
        .purpose(remote.purpose);
    if let Some(p) = config.purposes.get(remote.purpose) {
        builder = builder.typ(p.typ.as_str());
    }
    if let Some(aud) = remote.audience {
        builder = builder.audience(aud);
    }
    if remote.allow_http {
        builder = builder.allow_http();
    }
    let verifier = builder
        .build()
        .map_err(|e| CliError::Usage(e.to_string().replace("allow_http()", "--allow-http")))?;
    let verified = runtime
        .block_on(verifier.verify::<Map<String, Value>>(token.trim()))
        .map_err(|e| match e {
            VerifyError::UnknownKid(kid) => CliError::Refused(format!(
                "invalid token (unknown_kid): its key {kid} is not a key of {} at {}: is it a token of another purpose? Pass that --purpose",
                remote.purpose,
                verifier.jwks_url()
            )),
            other => CliError::Invalid(other),
        })?;
    out!(
        "{}",
        serde_json::to_string_pretty(&verified.claims).unwrap_or_default()
    );
    Ok(())
}

/// The `issuer` of the discovery document at the origin of `jwks_url`.
async fn discover_issuer(jwks_url: &str) -> Result<String, CliError> {
    let url = url::Url::parse(jwks_url)
        .map_err(|e| CliError::Usage(format!("--jwks-url {jwks_url:?}: {e}")))?;
    let discovery = format!(
        "{}/.well-known/openid-configuration",
        url.origin().ascii_serialization()
    );
    let unavailable = |why: String| {
        CliError::Unavailable(format!(
            "cannot read the issuer from {discovery}: {why}; pass --issuer"
        ))
    };
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(crate::verifier::tls_config().map_err(unavailable)?)
        .build()
        .map_err(|e| unavailable(e.to_string()))?;
    let response = http
        .get(&discovery)
        .send()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if !response.status().is_success() {
        return Err(unavailable(format!("status {}", response.status())));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let doc: Value = serde_json::from_slice(&body).map_err(|e| unavailable(e.to_string()))?;
    doc.get("issuer")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| unavailable("it has no issuer".into()))
}

fn print_keys(keys: &[KeyInfo], json: bool) {
    if json {
        out!("{}", serde_json::to_string_pretty(keys).unwrap_or_default());
        return;
    }
    if keys.is_empty() {
        out!("no keys yet: `signet serve` or `signet keys rotate` creates them");
        return;
    }
    out!(
        "{:<43}  {:<20}  {:<5}  {:<8}  {:<20}  {:<20}  {:<20}  {:<20}  PRIVATE",
        "KID",
        "PURPOSE",
        "ALG",
        "STATE",
        "CREATED",
        "ACTIVATES",
        "RETIRES",
        "EXPIRES"
    );
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for k in keys {
        out!(
            "{:<43}  {:<20}  {:<5}  {:<8}  {:<20}  {:<20}  {:<20}  {:<20}  {}",
            k.kid,
            k.purpose,
            k.alg.as_str(),
            k.state.as_str(),
            k.created_at,
            k.activates_at,
            dash(&k.retires_at),
            dash(&k.expires_at),
            k.private.as_deref().unwrap_or("destroyed")
        );
    }
}
