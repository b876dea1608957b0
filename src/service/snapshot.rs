//! The immutable view the hot paths read: parsed signing keys, verification
//! keys by kid, and the JWKS bodies with their ETags, rendered once per change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderValue;
use serde::Serialize;

use crate::clock::UnixTime;
use crate::config::Config;
use crate::keys::jwk::b64;
use crate::keys::token::encode_header;
use crate::keys::{Algorithm, KeyRecord, KeyState, Keyring, PublicJwk, PublicMembers, SigningKey};
use crate::storage::StoreError;
use crate::storage::seal::MasterKeys;

/// A JSON body rendered once, with its strong ETag.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The bytes served (cloning shares them).
    pub body: Bytes,
    /// A strong ETag (quoted), derived from the body.
    pub etag: HeaderValue,
}

impl Rendered {
    fn jwks<'a>(keys: impl Iterator<Item = &'a PublicJwk>) -> Rendered {
        #[derive(Serialize)]
        struct Jwks<'a> {
            keys: Vec<&'a PublicJwk>,
        }
        let body = serde_json::to_vec(&Jwks {
            keys: keys.collect(),
        })
        .unwrap_or_default();
        let digest = ring::digest::digest(&ring::digest::SHA256, &body);
        let etag = format!("\"{}\"", b64(&digest.as_ref()[..18]));
        Rendered {
            // base64url and quotes are always valid header bytes.
            etag: HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
            body: Bytes::from(body),
        }
    }
}

/// A private key ready to sign, with its header pre-rendered.
#[derive(Debug)]
pub struct Signer {
    /// The ring key pair, shared with later snapshots so keys are parsed once.
    pub key: Arc<SigningKey>,
    /// base64url `{"alg","kid","typ"}`.
    pub header_b64: String,
    /// Signs from this instant...
    pub activates_at: UnixTime,
    /// ...until this one.
    pub retires_at: Option<UnixTime>,
}

impl Signer {
    /// Whether this key signs at `now`: a pure time comparison, so the switch
    /// at a rotation boundary needs no rebuild.
    pub fn signs_at(&self, now: UnixTime) -> bool {
        self.activates_at <= now && self.retires_at.is_none_or(|r| now < r)
    }
}

/// A published public key, for verification.
#[derive(Debug, Clone)]
pub struct VerifyKey {
    /// Its algorithm.
    pub alg: Algorithm,
    /// Its public members.
    pub members: PublicMembers,
    /// It is unpublished from this instant.
    pub expires_at: Option<UnixTime>,
}

/// One purpose's keys.
#[derive(Debug)]
pub struct PurposeKeys {
    /// The keyring as stored (private halves sealed).
    pub keyring: Keyring,
    /// Keys that sign now or will (active and pending).
    pub signers: Vec<Signer>,
    /// Published keys by kid.
    pub verify: HashMap<String, VerifyKey>,
    /// This purpose's JWKS.
    pub jwks: Rendered,
}

/// Everything requests read, swapped whole on change.
#[derive(Debug)]
pub struct Snapshot {
    /// When it was built.
    pub built_at: UnixTime,
    /// The next instant at which a key changes state; rebuild then.
    pub valid_until: Option<UnixTime>,
    /// Per purpose.
    pub purposes: BTreeMap<String, PurposeKeys>,
    /// Every purpose's published keys.
    pub jwks: Rendered,
}

impl Snapshot {
    /// Builds a snapshot of `keyrings` at `now`, decrypting the private keys
    /// that sign now or later; keys already parsed in `previous` are reused.
    pub fn build(
        config: &Config,
        master: &MasterKeys,
        keyrings: Vec<Keyring>,
        now: UnixTime,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, StoreError> {
        let mut purposes = BTreeMap::new();
        let mut valid_until: Option<UnixTime> = None;
        for keyring in keyrings {
            let typ = config
                .purposes
                .get(&keyring.purpose)
                .map(|p| p.typ.as_str())
                .unwrap_or("JWT");
            let mut signers = Vec::new();
            let mut verify = HashMap::new();
            for key in &keyring.keys {
                for t in [Some(key.activates_at), key.retires_at, key.expires_at]
                    .into_iter()
                    .flatten()
                {
                    if t > now {
                        valid_until = Some(valid_until.map_or(t, |v| v.min(t)));
                    }
                }
                if !key.is_published_at(now) {
                    continue;
                }
                if let Some(members) = key.jwk.members() {
                    verify.insert(
                        key.kid.clone(),
                        VerifyKey {
                            alg: key.alg,
                            members,
                            expires_at: key.expires_at,
                        },
                    );
                }
                let state = key.state_at(now);
                if matches!(state, KeyState::Active | KeyState::Pending) && key.private.is_some() {
                    let reused = previous
                        .and_then(|p| p.purposes.get(&keyring.purpose))
                        .and_then(|p| p.signers.iter().find(|s| s.key.kid() == key.kid));
                    let parsed = match reused {
                        Some(s) => Arc::clone(&s.key),
                        None => Arc::new(open_key(master, &keyring.purpose, key)?),
                    };
                    signers.push(Signer {
                        header_b64: encode_header(key.alg, &key.kid, typ),
                        key: parsed,
                        activates_at: key.activates_at,
                        retires_at: key.retires_at,
                    });
                }
            }
            let jwks = Rendered::jwks(keyring.published(now).map(|k| &k.jwk));
            purposes.insert(
                keyring.purpose.clone(),
                PurposeKeys {
                    keyring,
                    signers,
                    verify,
                    jwks,
                },
            );
        }
        let jwks = Rendered::jwks(
            purposes
                .values()
                .flat_map(|p| p.keyring.published(now).map(|k| &k.jwk)),
        );
        Ok(Snapshot {
            built_at: now,
            valid_until,
            purposes,
            jwks,
        })
    }
}

/// Decrypts and parses a stored private key, checking it is the key its kid names.
pub(crate) fn open_key(
    master: &MasterKeys,
    purpose: &str,
    key: &KeyRecord,
) -> Result<SigningKey, StoreError> {
    let sealed = key.private.as_ref().ok_or_else(|| StoreError::Decrypt {
        purpose: purpose.to_owned(),
        kid: key.kid.clone(),
        reason: "its private half was destroyed".into(),
    })?;
    let pkcs8 = master.open(purpose, &key.kid, sealed)?;
    let parsed = SigningKey::from_pkcs8(key.alg, &pkcs8).map_err(|e| StoreError::Decrypt {
        purpose: purpose.to_owned(),
        kid: key.kid.clone(),
        reason: e.to_string(),
    })?;
    if parsed.kid() != key.kid {
        return Err(StoreError::Decrypt {
            purpose: purpose.to_owned(),
            kid: key.kid.clone(),
            reason: "the private key does not belong to this kid".into(),
        });
    }
    Ok(parsed)
}
