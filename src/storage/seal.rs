//! Master keys, the sealing of private keys at rest, and the authentication
//! of whole keyrings.
//!
//! Each private key is encrypted with AES-256-GCM (ring) under the newest
//! master key, with `signet/v1 <purpose> <kid>` as associated data: a sealed
//! key moved to another kid or purpose fails to open. Older master keys only
//! decrypt, so master keys rotate by prepending a new one and re-encrypting.
//!
//! Each keyring document (purpose, generation, identity, every key and its
//! timestamps) carries an HMAC-SHA256 tag under a key derived from the master
//! key with HKDF-SHA256 (RFC 5869), distinct from the sealing key. Someone who
//! can write the keys directory but lacks the master key can neither add a
//! key, nor clear a revocation, nor move a keyring to another purpose.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::crypto::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use crate::crypto::rand::{SecureRandom, SystemRandom};
use crate::crypto::{hkdf, hmac};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::StoreError;
use crate::keys::jwk::{b64, b64_decode};
use crate::keys::{Keyring, KeyringMac, Pkcs8, SealedKey};

/// The file holding the development master key inside the keys directory.
pub const MASTER_KEY_FILE: &str = "master.key";

struct MasterKey {
    id: String,
    key: LessSafeKey,
    mac: hmac::Key,
}

/// The configured master keys, newest first.
pub struct MasterKeys {
    keys: Vec<MasterKey>,
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<_> = self.keys.iter().map(|k| k.id.as_str()).collect();
        write!(f, "MasterKeys({ids:?}, <redacted>)")
    }
}

/// Where the master keys came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterSource {
    /// `SIGNET_MASTER_KEYS`.
    Environment,
    /// An existing `keys/master.key`.
    File(PathBuf),
    /// A `keys/master.key` created just now (development setup).
    Created(PathBuf),
}

fn master_err(msg: impl Into<String>) -> StoreError {
    StoreError::MasterKey(msg.into())
}

impl MasterKeys {
    /// Parses `SIGNET_MASTER_KEYS`-style text: comma-separated base64 32-byte keys, newest first.
    pub fn parse(text: &str) -> Result<MasterKeys, StoreError> {
        let mut keys = Vec::new();
        for (i, part) in text.split(',').map(str::trim).enumerate() {
            let bytes = Zeroizing::new(STANDARD.decode(part).map_err(|_| {
                master_err(format!("entry {} of SIGNET_MASTER_KEYS is not base64; generate one with `openssl rand -base64 32`", i + 1))
            })?);
            if bytes.len() != 32 {
                return Err(master_err(format!(
                    "entry {} of SIGNET_MASTER_KEYS is {} bytes; each key must be 32 random bytes, base64 (`openssl rand -base64 32`)",
                    i + 1,
                    bytes.len()
                )));
            }
            keys.push(MasterKey::new(&bytes)?);
        }
        Ok(MasterKeys { keys })
    }

    /// The keys from `SIGNET_MASTER_KEYS` if set, else from `dir/master.key`,
    /// creating it (mode 0600) when `dir` holds no keyring yet.
    pub fn load(env: Option<&str>, dir: &Path) -> Result<(MasterKeys, MasterSource), StoreError> {
        if let Some(text) = env {
            return Ok((MasterKeys::parse(text)?, MasterSource::Environment));
        }
        let path = dir.join(MASTER_KEY_FILE);
        let read = super::small_file::read_small(&path, 4096);
        match read {
            Ok(Some(bytes)) => {
                let bytes = Zeroizing::new(bytes);
                let text = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
                let keys = MasterKeys::parse(text.trim()).map_err(|e| {
                    master_err(format!(
                        "{} is unusable ({e}); restore it from a backup",
                        path.display()
                    ))
                })?;
                Ok((keys, MasterSource::File(path)))
            }
            Err(super::small_file::SmallFileError::Refused(reason)) => Err(master_err(format!(
                "{} {reason}; restore it from a backup",
                path.display()
            ))),
            Ok(None) => {
                let has_keyrings = fs::read_dir(dir)
                    .map(|entries| {
                        entries
                            .flatten()
                            .any(|e| e.path().extension().is_some_and(|x| x == "json"))
                    })
                    .unwrap_or(false);
                if has_keyrings {
                    return Err(master_err(format!(
                        "{} holds keyrings but {} is missing and SIGNET_MASTER_KEYS is unset: set SIGNET_MASTER_KEYS to the key they were sealed with, or restore {}",
                        dir.display(),
                        path.display(),
                        path.display()
                    )));
                }
                let mut bytes = Zeroizing::new([0u8; 32]);
                SystemRandom::new()
                    .fill(&mut bytes[..])
                    .map_err(|_| master_err("the system random number generator failed"))?;
                let text = Zeroizing::new(STANDARD.encode(&bytes[..]));
                super::durable::ensure_dir(dir)?;
                let io = |source| StoreError::Io {
                    action: "create",
                    path: path.clone(),
                    source,
                };
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                f.write_all(text.as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
                super::durable::sync_dir(dir)?;
                Ok((
                    MasterKeys {
                        keys: vec![MasterKey::new(&bytes[..])?],
                    },
                    MasterSource::Created(path),
                ))
            }
            Err(super::small_file::SmallFileError::Io(source)) => Err(StoreError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// The id of the key that seals (the newest).
    pub fn current_id(&self) -> &str {
        self.keys.first().map(|k| k.id.as_str()).unwrap_or("")
    }

    /// Encrypts a private key for `purpose`/`kid` under the newest master key.
    pub fn seal(&self, purpose: &str, kid: &str, pkcs8: &Pkcs8) -> Result<SealedKey, StoreError> {
        self.seal_bytes(purpose, kid, pkcs8.expose_der())
    }

    /// Encrypts secret bytes for `purpose`/`id` (a private key's PKCS#8, or
    /// a legacy HMAC secret under `legacy:<label>`).
    pub fn seal_bytes(
        &self,
        purpose: &str,
        kid: &str,
        secret: &[u8],
    ) -> Result<SealedKey, StoreError> {
        let master = self
            .keys
            .first()
            .ok_or_else(|| master_err("no master key configured"))?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| master_err("the system random number generator failed"))?;
        let mut buf = secret.to_vec();
        let sealed = master.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(purpose, kid)),
            &mut buf,
        );
        let out = sealed.map(|()| SealedKey {
            master: master.id.clone(),
            nonce: b64(&nonce),
            ciphertext: b64(&buf),
        });
        zeroize::Zeroize::zeroize(&mut buf);
        out.map_err(|_| master_err("encryption failed"))
    }

    /// Decrypts a private key sealed for `purpose`/`kid`.
    pub fn open(&self, purpose: &str, kid: &str, sealed: &SealedKey) -> Result<Pkcs8, StoreError> {
        self.open_bytes(purpose, kid, sealed).map(Pkcs8::from_der)
    }

    /// Decrypts secret bytes sealed for `purpose`/`kid` ([`seal_bytes`](Self::seal_bytes)).
    pub fn open_bytes(
        &self,
        purpose: &str,
        kid: &str,
        sealed: &SealedKey,
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let fail = |reason: String| StoreError::Decrypt {
            purpose: purpose.to_owned(),
            kid: kid.to_owned(),
            reason,
        };
        let master = self.keys.iter().find(|k| k.id == sealed.master).ok_or_else(|| {
            fail(format!(
                "it was sealed with master key {}, which is not configured (configured: {}); add that key to SIGNET_MASTER_KEYS",
                sealed.master,
                self.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        let nonce = b64_decode(&sealed.nonce)
            .and_then(|n| <[u8; NONCE_LEN]>::try_from(n).ok())
            .ok_or_else(|| fail("its nonce is malformed: the keyring was altered".into()))?;
        let mut buf = Zeroizing::new(b64_decode(&sealed.ciphertext).ok_or_else(|| {
            fail("its ciphertext is not base64url: the keyring was altered".into())
        })?);
        let plain = master
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(purpose, kid)),
                &mut buf,
            )
            .map_err(|_| {
                fail(
                    "authentication failed: the ciphertext was altered, or moved from another key"
                        .into(),
                )
            })?;
        Ok(Zeroizing::new(plain.to_vec()))
    }
}

impl MasterKeys {
    /// Sets `keyring.mac` to its authentication under every configured
    /// master key, so that a process still holding only an older key (in the
    /// middle of a master-key rotation) can check it. Call after every other
    /// change, generation included.
    pub fn authenticate(&self, keyring: &mut Keyring) -> Result<(), StoreError> {
        keyring.mac.clear();
        keyring.mac = self.tag_all(KEYRING_DOMAIN, &mac_input(keyring)?)?;
        Ok(())
    }

    /// Checks `keyring.mac`: a tag under a configured master key must verify.
    pub fn check(&self, keyring: &Keyring) -> Result<(), StoreError> {
        let unsigned = Keyring {
            mac: Vec::new(),
            ..keyring.clone()
        };
        self.verify_any(KEYRING_DOMAIN, &mac_input(&unsigned)?, &keyring.mac)
            .map_err(|reason| StoreError::Unauthenticated {
                purpose: keyring.purpose.clone(),
                reason: match reason {
                    TagFailure::Missing => "it carries no authentication (written by an earlier signet, or stripped): check its keys with `signet keys list`, then run `signet keys authenticate`".into(),
                    TagFailure::Altered => "it was altered outside signet (a key added or changed, a revocation cleared, a timestamp moved)".into(),
                    other => other.to_string(),
                },
            })
    }

    /// Tags of `data` under every configured master key, for a document of
    /// kind `domain` (a label no other kind shares), so that a process still
    /// holding only an older key (in the middle of a master-key rotation)
    /// can check them.
    pub fn tag_all(&self, domain: &str, data: &[u8]) -> Result<Vec<KeyringMac>, StoreError> {
        let input = domain_input(domain, data);
        let tags: Vec<KeyringMac> = self
            .keys
            .iter()
            .map(|k| KeyringMac {
                master: k.id.clone(),
                tag: b64(hmac::sign(&k.mac, &input).as_ref()),
            })
            .collect();
        if tags.is_empty() {
            return Err(master_err("no master key configured"));
        }
        Ok(tags)
    }

    /// Checks tags made by [`tag_all`](Self::tag_all): the first under a
    /// configured master key must verify.
    pub fn verify_any(
        &self,
        domain: &str,
        data: &[u8],
        tags: &[KeyringMac],
    ) -> Result<(), TagFailure> {
        if tags.is_empty() {
            return Err(TagFailure::Missing);
        }
        let Some((master, mac)) = tags
            .iter()
            .find_map(|m| self.keys.iter().find(|k| k.id == m.master).map(|k| (k, m)))
        else {
            let ids: Vec<_> = tags.iter().map(|m| m.master.as_str()).collect();
            return Err(TagFailure::UnknownMaster(ids.join(", ")));
        };
        let tag = b64_decode(&mac.tag).ok_or(TagFailure::Malformed)?;
        hmac::verify(&master.mac, &domain_input(domain, data), &tag)
            .map_err(|_| TagFailure::Altered)
    }

    /// Whether `keyring` is authenticated under exactly the configured master keys.
    pub fn authenticated_by_all(&self, keyring: &Keyring) -> bool {
        keyring.mac.len() == self.keys.len()
            && self
                .keys
                .iter()
                .zip(&keyring.mac)
                .all(|(k, m)| k.id == m.master)
    }
}

/// Why tags made by [`MasterKeys::tag_all`] do not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TagFailure {
    /// There are none.
    #[error("it carries no authentication")]
    Missing,
    /// None is under a configured master key (their ids, comma-separated).
    #[error(
        "it was authenticated with master key(s) {0}, none of which is configured; add the newest to SIGNET_MASTER_KEYS"
    )]
    UnknownMaster(String),
    /// A tag is not base64url.
    #[error("its authentication tag is not base64url")]
    Malformed,
    /// The tag does not match the data.
    #[error("it was altered outside signet")]
    Altered,
}

/// The domain label of keyring documents. The label `signet/v1 keyring`
/// followed by NUL is what keyrings have always been tagged with.
const KEYRING_DOMAIN: &str = "keyring";

/// What a tag covers: `signet/v1 <domain>`, a NUL, then the data.
fn domain_input(domain: &str, data: &[u8]) -> Vec<u8> {
    let mut input = format!("signet/v1 {domain}\0").into_bytes();
    input.extend_from_slice(data);
    input
}

/// A keyring's whole document, as its tag covers it.
fn mac_input(keyring: &Keyring) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(keyring).map_err(|e| master_err(format!("cannot encode the keyring: {e}")))
}

impl MasterKey {
    fn new(bytes: &[u8]) -> Result<MasterKey, StoreError> {
        let mut input = b"signet master key id\0".to_vec();
        input.extend_from_slice(bytes);
        let digest = crate::crypto::digest::digest(&crate::crypto::digest::SHA256, &input);
        zeroize::Zeroize::zeroize(&mut input);
        let id = b64(&digest.as_ref()[..9]);
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| master_err("a master key must be 32 bytes"))?;
        let mac: hmac::Key = hkdf::Salt::new(hkdf::HKDF_SHA256, b"signet master key")
            .extract(bytes)
            .expand(&[b"signet/v1 keyring authentication"], hmac::HMAC_SHA256)
            .map_err(|_| master_err("cannot derive the keyring authentication key"))?
            .into();
        Ok(MasterKey {
            id,
            key: LessSafeKey::new(key),
            mac,
        })
    }
}

fn aad(purpose: &str, kid: &str) -> Vec<u8> {
    format!("signet/v1 {purpose} {kid}").into_bytes()
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;
