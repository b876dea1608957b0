//! The immutable view the hot paths read: per purpose, the keyring as
//! loaded, its parsed signing keys, verification keys by kid and its JWKS
//! body with ETag, rendered once per change; plus the JWKS of every purpose.
//!
//! The public side (JWKS, verification keys, states) comes from the keyring
//! alone: a process that cannot decrypt a key still publishes and verifies
//! exactly what the store holds. Only signing needs the private halves, and
//! a key that cannot sign is never replaced by another (`docs/lifecycle.md`
//! rule 1).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::legacy::open_legacy;
use super::signer::{KeySigner, TokenRef, open_key};
use crate::clock::UnixTime;
use crate::config::PurposeConfig;
use crate::keys::jwk::b64;
use crate::keys::legacy::OpenLegacyKey;
use crate::keys::token::encode_header;
use crate::keys::{Algorithm, KeyState, Keyring, PublicJwk, VerifyingKey};
use crate::storage::TokenEntry;
use crate::storage::seal::MasterKeys;

/// A JSON body rendered once, with its strong ETag.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The bytes served (cloning shares them).
    pub body: Bytes,
    /// A strong ETag (quoted base64url, so always a valid header value),
    /// derived from the body.
    pub etag: Bytes,
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
        Rendered::of(body)
    }
}

impl Rendered {
    /// The revocation document: keys revoked while tokens they signed may
    /// still be cached as valid (a revoked key stays in its keyring for the
    /// retention, then is dropped, and so leaves the document), and revoked
    /// tokens until their `exp` plus the leeway (`docs/lifecycle.md` rule 12).
    fn revocations<'a>(
        purposes: impl Iterator<Item = &'a PurposeKeys>,
        tokens: &[TokenEntry],
    ) -> Rendered {
        #[derive(Serialize)]
        struct Key<'a> {
            kid: &'a str,
            purpose: &'a str,
            revoked_at: u64,
        }
        #[derive(Serialize)]
        struct Token<'a> {
            jti: &'a str,
            purpose: &'a str,
            exp: u64,
        }
        #[derive(Serialize)]
        struct Doc<'a> {
            revoked_keys: Vec<Key<'a>>,
            revoked_tokens: Vec<Token<'a>>,
        }
        let mut revoked_keys: Vec<Key<'_>> = purposes
            .flat_map(|p| {
                p.keyring.keys.iter().filter_map(|k| {
                    k.revoked_at.map(|at| Key {
                        kid: &k.kid,
                        purpose: &p.keyring.purpose,
                        revoked_at: at.0,
                    })
                })
            })
            .collect();
        revoked_keys.sort_by(|a, b| (a.purpose, a.kid).cmp(&(b.purpose, b.kid)));
        let revoked_tokens = tokens
            .iter()
            .map(|t| Token {
                jti: &t.jti,
                purpose: &t.purpose,
                exp: t.exp.0,
            })
            .collect();
        let body = serde_json::to_vec(&Doc {
            revoked_keys,
            revoked_tokens,
        })
        .unwrap_or_default();
        Rendered::of(body)
    }

    fn of(body: Vec<u8>) -> Rendered {
        let digest = crate::crypto::digest::digest(&crate::crypto::digest::SHA256, &body);
        let etag = format!("\"{}\"", b64(&digest.as_ref()[..18]));
        Rendered {
            etag: Bytes::from(etag),
            body: Bytes::from(body),
        }
    }
}

/// A private key ready to sign, with its header pre-rendered.
#[derive(Debug, Clone)]
pub struct Signer {
    /// The parsed key pair or token key, shared with later snapshots so
    /// keys are parsed (or found) once.
    pub key: Arc<KeySigner>,
    /// base64url `{"alg","kid","typ"}`.
    pub header_b64: String,
}

/// A published public key, for verification.
#[derive(Debug, Clone)]
pub struct VerifyKey {
    /// Its algorithm.
    pub alg: Algorithm,
    /// Its public key, parsed once.
    pub key: VerifyingKey,
    /// It is unpublished from this instant.
    pub expires_at: Option<UnixTime>,
}

/// Why a purpose is not served exactly as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFault {
    /// Short and safe for unauthenticated clients (`/readyz`).
    pub summary: &'static str,
    /// The full cause and its fix, for the log and the operator's CLI.
    pub detail: String,
    /// Whether the purpose is unfit to serve. A database that cannot be
    /// reached is not: every replica keeps serving and signing from what it
    /// holds, and taking them all out of a load balancer at once would turn
    /// a store outage into a full one.
    pub blocks_readiness: bool,
}

/// One purpose's keys, as of one load of its keyring.
#[derive(Debug, Clone)]
pub struct PurposeKeys {
    /// The keyring as loaded (private halves sealed).
    pub keyring: Keyring,
    /// When this view was built.
    pub built_at: UnixTime,
    /// The next instant at which a key changes state; rebuild then.
    pub valid_until: Option<UnixTime>,
    /// Every active and pending key by kid: parsed, or why it cannot sign.
    pub signers: HashMap<String, Result<Signer, String>>,
    /// Published keys by kid.
    pub verify: HashMap<String, VerifyKey>,
    /// This purpose's JWKS.
    pub jwks: Rendered,
    /// Set when the latest load failed: this is the last good view.
    pub fault: Option<StoreFault>,
    /// Whether this purpose's keys are in the third-party JWKS.
    pub discovery: bool,
    /// The live legacy HMAC secrets, opened, in the order they are tried.
    pub legacy: Arc<[OpenLegacyKey]>,
}

impl PurposeKeys {
    /// Builds the view of `keyring` at `now`, decrypting the private keys
    /// that sign now or later; keys already parsed in `previous` are reused,
    /// so a process keeps the keys it holds when the master key changes.
    pub fn build(
        master: &MasterKeys,
        token: Option<&TokenRef>,
        config: &PurposeConfig,
        keyring: Keyring,
        now: UnixTime,
        previous: Option<&PurposeKeys>,
    ) -> PurposeKeys {
        let mut signers = HashMap::new();
        let mut verify = HashMap::new();
        let mut valid_until: Option<UnixTime> = None;
        for key in &keyring.keys {
            for t in [Some(key.activates_at), key.retires_at, key.expires_at]
                .into_iter()
                .flatten()
                .filter(|t| *t > now)
            {
                valid_until = Some(valid_until.map_or(t, |v| v.min(t)));
            }
            if !key.is_published_at(now) {
                continue;
            }
            if let Some(members) = key.jwk.members() {
                verify.insert(
                    key.kid.clone(),
                    VerifyKey {
                        alg: key.alg,
                        key: VerifyingKey::new(key.alg, &members),
                        expires_at: key.expires_at,
                    },
                );
            }
            if !matches!(key.state_at(now), KeyState::Active | KeyState::Pending) {
                continue;
            }
            let reused = previous
                .and_then(|p| p.signers.get(&key.kid))
                .and_then(|s| s.as_ref().ok())
                .map(|s| Arc::clone(&s.key));
            let parsed = match reused {
                Some(k) => Ok(k),
                None => open_key(master, token, &keyring.purpose, key).map(Arc::new),
            };
            let signer = parsed.map(|key| Signer {
                header_b64: encode_header(key.alg(), key.kid(), &config.typ),
                key,
            });
            signers.insert(key.kid.clone(), signer);
        }
        let jwks = Rendered::jwks(keyring.published(now).map(|k| &k.jwk));
        let legacy = open_legacy(master, &keyring.purpose, &keyring.legacy, now).into();
        for l in &keyring.legacy {
            if l.expires_at > now {
                valid_until = Some(valid_until.map_or(l.expires_at, |v| v.min(l.expires_at)));
            }
        }
        PurposeKeys {
            legacy,
            keyring,
            built_at: now,
            valid_until,
            signers,
            verify,
            jwks,
            fault: None,
            discovery: config.discovery,
        }
    }

    /// An empty view of a purpose whose keyring has never loaded.
    pub fn empty(purpose: &str, now: UnixTime) -> PurposeKeys {
        PurposeKeys {
            keyring: Keyring::new(purpose),
            built_at: now,
            valid_until: None,
            signers: HashMap::new(),
            verify: HashMap::new(),
            jwks: Rendered::jwks(std::iter::empty()),
            fault: None,
            discovery: false,
            legacy: Arc::new([]),
        }
    }

    /// Orders two views of one purpose: a later generation of the keyring,
    /// then a later build, then a clean view over a faulted one. A view never
    /// replaces one that is not older by this order, so a refresh that loaded
    /// before a concurrent commit cannot undo it.
    fn version(&self) -> (u64, UnixTime, bool) {
        (self.keyring.generation, self.built_at, self.fault.is_none())
    }

    /// The published keys, as of when this view was built.
    fn published(&self) -> impl Iterator<Item = &PublicJwk> {
        self.keyring.published(self.built_at).map(|k| &k.jwk)
    }
}

/// Everything requests read, swapped whole on change.
#[derive(Debug)]
pub struct Snapshot {
    /// Per purpose.
    pub purposes: BTreeMap<String, Arc<PurposeKeys>>,
    /// Every purpose's published keys, for signet's own verifier (which
    /// checks `typ`).
    pub jwks: Rendered,
    /// The published keys of the purposes third parties verify
    /// (`discovery = true`): what OIDC discovery's `jwks_uri` serves, so a
    /// generic verifier cannot take another purpose's token for an access token.
    pub third_party: Rendered,
    /// Revoked tokens, as the store last listed them.
    pub revoked_tokens: Arc<Vec<TokenEntry>>,
    /// Which read of the list that was: a read started earlier never
    /// replaces one started later (it could undo a revocation).
    pub revoked_read: u64,
    /// Their `jti`s, for the server's own verification.
    pub revoked_jtis: HashSet<String>,
    /// The revocation document (`/.well-known/signet/revocations.json`).
    pub revocations: Rendered,
}

impl Snapshot {
    /// A snapshot of no purpose.
    pub fn empty() -> Snapshot {
        Snapshot {
            purposes: BTreeMap::new(),
            jwks: Rendered::jwks(std::iter::empty()),
            third_party: Rendered::jwks(std::iter::empty()),
            revoked_tokens: Arc::default(),
            revoked_read: 0,
            revoked_jtis: HashSet::new(),
            revocations: Rendered::revocations(std::iter::empty(), &[]),
        }
    }

    /// This snapshot with each update applied where it is not stale, and the
    /// combined JWKS re-rendered. An update is a view built from a load that
    /// started when `base` was the purpose's view: it replaces the current
    /// view if that is still `base` (nothing was stored since) or is older
    /// by version (keyring generation, then build time, then clean over faulted).
    /// `tokens`, the list of revoked tokens from the read numbered `.0`,
    /// replaces the current list if that came from an earlier read.
    pub fn merged(
        &self,
        updates: &[(Option<Arc<PurposeKeys>>, Arc<PurposeKeys>)],
        tokens: Option<&(u64, Arc<Vec<TokenEntry>>)>,
    ) -> Snapshot {
        let mut purposes = self.purposes.clone();
        for (base, update) in updates {
            let purpose = &update.keyring.purpose;
            let replace = match (purposes.get(purpose), base) {
                (None, _) => true,
                (Some(current), Some(base)) if Arc::ptr_eq(current, base) => true,
                // Views of different keyrings (one moved aside and started
                // again) have no order: only the base rule applies.
                (Some(current), _) => {
                    current.keyring.id == update.keyring.id && current.version() < update.version()
                }
            };
            if replace {
                purposes.insert(purpose.clone(), Arc::clone(update));
            }
        }
        let jwks = Rendered::jwks(purposes.values().flat_map(|p| p.published()));
        let third_party = Rendered::jwks(
            purposes
                .values()
                .filter(|p| p.discovery)
                .flat_map(|p| p.published()),
        );
        let (revoked_read, revoked_tokens) = match tokens {
            Some((read, list)) if *read > self.revoked_read => (*read, Arc::clone(list)),
            _ => (self.revoked_read, self.revoked_tokens.clone()),
        };
        let revoked_jtis = revoked_tokens.iter().map(|t| t.jti.clone()).collect();
        let revocations =
            Rendered::revocations(purposes.values().map(Arc::as_ref), &revoked_tokens);
        Snapshot {
            purposes,
            jwks,
            third_party,
            revoked_tokens,
            revoked_read,
            revoked_jtis,
            revocations,
        }
    }
}
