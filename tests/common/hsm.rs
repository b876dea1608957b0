//! A throwaway SoftHSM2 token for the PKCS#11 tests: its own configuration
//! and token directory in a temporary directory, initialised with
//! `softhsm2-util`. signet runs as a child process with `SOFTHSM2_CONF`
//! pointing there (SoftHSM2 reads it from the environment at
//! `C_Initialize`); the token is inspected independently of signet with
//! python-pkcs11 (`tests/interop/python/hsm_probe.py`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

/// Debian's SoftHSM2 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The token's user PIN in the tests.
pub const PIN: &str = "31415926";
const SO_PIN: &str = "27182818";

/// One initialised token.
pub struct SoftHsm {
    dir: TempDir,
    pub label: String,
}

impl SoftHsm {
    /// A new token labelled `label`. A missing SoftHSM2 fails the test
    /// with the fix (the tests that need it are `#[ignore]`d, so they run
    /// only when asked to: `cargo test -- --include-ignored`).
    pub fn new(label: &str) -> SoftHsm {
        let installed = Path::new(MODULE).exists()
            && Command::new("softhsm2-util")
                .arg("--version")
                .output()
                .is_ok();
        assert!(
            installed,
            "SoftHSM2 is not installed ({MODULE}): run tests/setup.sh"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        let hsm = SoftHsm {
            dir,
            label: label.to_owned(),
        };
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", SO_PIN, "--pin", PIN])
            .env("SOFTHSM2_CONF", hsm.conf())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        hsm
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// The `[signer]` section for this token.
    pub fn signer_config(&self) -> String {
        format!(
            "[signer]\nkind = \"pkcs11\"\nmodule = {MODULE:?}\ntoken_label = {:?}\n",
            self.label
        )
    }

    /// What a signet process needs in its environment.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SOFTHSM2_CONF", self.conf().display().to_string()),
            ("SIGNET_PKCS11_PIN", PIN.to_owned()),
        ]
    }

    fn probe(&self, args: &[&str]) -> Value {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python");
        let python = dir.join(".venv/bin/python");
        assert!(
            python.exists(),
            "python-pkcs11 is not installed; run tests/setup.sh"
        );
        let out = Command::new(python)
            .arg(dir.join("hsm_probe.py"))
            .args([MODULE, &self.label])
            .args(args)
            .env("SOFTHSM2_CONF", self.conf())
            .env("SIGNET_PKCS11_PIN", PIN)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hsm_probe {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The token's private keys, as python-pkcs11 sees them.
    pub fn private_keys(&self) -> Vec<Value> {
        self.probe(&["list"]).as_array().unwrap().clone()
    }

    /// The labels of the token's private keys.
    pub fn labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = self
            .private_keys()
            .iter()
            .map(|k| k["label"].as_str().unwrap().to_owned())
            .collect();
        labels.sort();
        labels
    }

    /// Destroys the private key with this `CKA_ID` behind signet's back.
    pub fn delete(&self, id: &str) {
        assert_eq!(self.probe(&["delete", id])["deleted"], 1);
    }

    fn token_dir(&self) -> PathBuf {
        let tokens = self.dir.path().join("tokens");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&tokens)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(dirs.len(), 1, "one token in {}", tokens.display());
        dirs.pop().unwrap()
    }

    /// Takes the token away (its files leave the token directory), as a
    /// pulled HSM or a lost network HSM would; returns where it is kept.
    pub fn remove(&self) -> PathBuf {
        let from = self.token_dir();
        let to = self.dir.path().join("removed");
        std::fs::rename(&from, &to).unwrap();
        from
    }

    /// Puts a removed token back where it was.
    pub fn restore(&self, to: &Path) {
        std::fs::rename(self.dir.path().join("removed"), to).unwrap();
    }
}
