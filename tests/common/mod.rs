//! Shared helpers: a temporary signet home with a config file and master key.

#![allow(dead_code, unreachable_pub, missing_docs)] // test helpers, not API

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

pub mod hsm;
pub mod jwks_server;
pub mod jwt_provider;
pub mod pg;
pub mod server;

/// A fixed, test-only master key (32 bytes of 0x07, base64).
pub const MASTER: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
/// Another master key, for the wrong-key and re-encryption tests.
pub const OTHER_MASTER: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";

/// A temporary directory holding `signet.toml` and `keys/`.
pub struct Home {
    pub dir: TempDir,
    pub master: String,
}

impl Home {
    /// A home whose configuration is `extra` appended to a store path line.
    pub fn new(extra: &str) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let config = format!("[store]\npath = {:?}\n{extra}", keys.display().to_string());
        std::fs::write(dir.path().join("signet.toml"), config).unwrap();
        Home {
            dir,
            master: MASTER.into(),
        }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("signet.toml")
    }

    pub fn keys(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// A `signet` command with this home's config and master key.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_signet"));
        c.arg("--config").arg(self.config()).args(args);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SIGNET_MASTER_KEYS", &self.master)
            .current_dir(self.dir.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "signet {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// The exit code and stderr of a run.
pub fn code(out: &Output) -> (i32, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file's bytes in a directory.
pub fn snapshot_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
        .collect();
    out.sort();
    out
}

/// The token-list methods of a `KeyStore` wrapper, passed to its `inner` store.
#[macro_export]
macro_rules! delegate_token_lists {
    ($inner:ident) => {
        fn record_token(
            &self,
            list: signet::storage::TokenList,
            entry: &signet::storage::TokenEntry,
        ) -> Result<bool, signet::storage::StoreError> {
            self.$inner.record_token(list, entry)
        }
        fn token_recorded(
            &self,
            list: signet::storage::TokenList,
            entry: &signet::storage::TokenEntry,
        ) -> Result<bool, signet::storage::StoreError> {
            self.$inner.token_recorded(list, entry)
        }
        fn tokens(
            &self,
            list: signet::storage::TokenList,
        ) -> Result<Vec<signet::storage::TokenEntry>, signet::storage::StoreError> {
            self.$inner.tokens(list)
        }
        fn tokens_version(
            &self,
            list: signet::storage::TokenList,
        ) -> Result<Option<String>, signet::storage::StoreError> {
            self.$inner.tokens_version(list)
        }
        fn prune_tokens(
            &self,
            before: signet::clock::UnixTime,
        ) -> Result<usize, signet::storage::StoreError> {
            self.$inner.prune_tokens(before)
        }
    };
}
