//! The encrypted file store, through the CLI and the library.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use base64::Engine;
use signet::clock::{Clock, ManualClock, SystemClock};
use signet::keys::jwk::b64;
use signet::storage::seal::MasterKeys;
use signet::storage::{CrashPoint, FileStore, KeyStore};

use crate::common::{Home, OTHER_MASTER, code, snapshot_dir};
use crate::service::service;

const CONFIG: &str = "[purposes.access_token]\nalgorithms = [\"EdDSA\", \"ES256\"]\n";

fn bootstrapped() -> Home {
    let home = Home::new(CONFIG);
    home.ok(&["token", "sign", "--purpose", "access_token"]);
    home
}

#[test]
fn keyrings_reload_unchanged_with_owner_only_permissions() {
    let home = bootstrapped();
    let store = FileStore::open(home.keys()).unwrap();
    let first = store.load("access_token").unwrap().unwrap();
    assert_eq!(
        first.keys.len(),
        4,
        "an active and a pending key per algorithm"
    );
    let again = FileStore::open(home.keys())
        .unwrap()
        .load("access_token")
        .unwrap()
        .unwrap();
    assert_eq!(first, again);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home.keys()), 0o700);
    for (path, _) in snapshot_dir(&home.keys()) {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[test]
fn no_private_key_bytes_in_plaintext() {
    let home = bootstrapped();
    let store = FileStore::open(home.keys()).unwrap();
    let master = MasterKeys::parse(&home.master).unwrap();
    let files = snapshot_dir(&home.keys());
    let mut checked = 0;
    for purpose in [
        "access_token",
        "refresh_token",
        "magic_link",
        "reset_password_link",
    ] {
        for key in store.load(purpose).unwrap().unwrap().keys {
            let pkcs8 = master
                .open(purpose, &key.kid, key.sealed().unwrap())
                .unwrap();
            let der = pkcs8.expose_der();
            let encodings = [
                b64(der).into_bytes(),
                base64::engine::general_purpose::STANDARD
                    .encode(der)
                    .into_bytes(),
            ];
            for (path, bytes) in &files {
                // Any 16-byte window of the DER, raw, or the whole DER encoded.
                for window in der.windows(16).step_by(8) {
                    assert!(
                        !contains(bytes, window),
                        "private bytes in {}",
                        path.display()
                    );
                }
                for enc in &encodings {
                    assert!(
                        !contains(bytes, &enc[..24]),
                        "encoded private key in {}",
                        path.display()
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 8);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Runs the commands that read and write the keyring; each must fail with
/// exit 2 and a message containing `needle`, and leave every file as it was.
fn refused_and_untouched(home: &Home, needle: &str) {
    let before = snapshot_dir(&home.keys());
    for args in [
        &["token", "sign", "--purpose", "access_token"][..],
        &["keys", "rotate", "access_token", "--force"],
        &["keys", "list"],
    ] {
        let (status, err) = code(&home.run(args));
        assert_eq!(status, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    }
    assert_eq!(snapshot_dir(&home.keys()), before, "a file was modified");
}

#[test]
fn a_flipped_ciphertext_byte_is_reported_and_nothing_is_written() {
    let home = bootstrapped();
    let path = home.keys().join("access_token.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text.find("\"ciphertext\": \"").unwrap() + 20;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&path, bytes).unwrap();
    refused_and_untouched(&home, "fails authentication");
}

#[test]
fn a_wrong_master_key_is_reported_and_nothing_is_written() {
    let mut home = bootstrapped();
    home.master = OTHER_MASTER.into();
    refused_and_untouched(&home, "none of which is configured");
}

#[test]
fn a_truncated_keyring_is_reported_and_nothing_is_written() {
    let home = bootstrapped();
    let path = home.keys().join("access_token.json");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    refused_and_untouched(&home, "access_token.json is truncated");
}

#[test]
fn a_key_altered_by_hand_is_reported() {
    let home = bootstrapped();
    let path = home.keys().join("refresh_token.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text.find("\"x\": \"").unwrap() + 6;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&path, bytes).unwrap();
    let (status, err) = code(&home.run(&["keys", "list"]));
    assert_eq!(status, 2);
    assert!(err.contains("does not match its kid"), "{err}");
}

#[test]
fn reencrypt_moves_every_key_to_the_newest_master_key() {
    let mut home = bootstrapped();
    let old = home.master.clone();
    home.master = format!("{OTHER_MASTER},{old}");
    let out = home.ok(&["keys", "reencrypt"]);
    assert!(out.contains("re-encrypted 10 private key(s)"), "{out}");
    home.master = OTHER_MASTER.into();
    home.ok(&["token", "sign", "--purpose", "access_token"]);
    home.master = old;
    assert_eq!(
        code(&home.run(&["keys", "list"])).0,
        2,
        "the old key alone no longer opens them"
    );
}

/// Temporary files in the keys directory: what a killed writer leaves.
fn leftovers(home: &Home) -> Vec<String> {
    std::fs::read_dir(home.keys())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".json.tmp-"))
        .collect()
}

#[test]
fn a_writer_stopped_at_any_step_leaves_a_whole_keyring_and_no_private_leftovers() {
    for point in CrashPoint::ALL {
        let home = bootstrapped();
        let store = Arc::new(FileStore::open(home.keys()).unwrap());
        let clock = ManualClock::new(SystemClock.now());
        let svc = service(&home, store.clone(), &clock);
        let before = store.load("access_token").unwrap().unwrap();

        // The writer stops inside the write, as if killed there.
        store.crash_at(Some(point));
        let err = svc.rotate(Some("access_token"), true).unwrap_err();
        assert!(
            err.to_string().contains("injected crash"),
            "{point:?}: {err}"
        );
        let after = store.load("access_token").unwrap().unwrap();
        if point == CrashPoint::Renamed {
            assert_eq!(after.generation, before.generation + 1, "{point:?}");
            assert!(leftovers(&home).is_empty(), "{point:?}");
        } else {
            assert_eq!(after, before, "{point:?}: the old keyring, whole");
            assert_eq!(
                leftovers(&home).len(),
                1,
                "{point:?}: the fault is inside the write"
            );
        }

        // The next process to open the store deletes the leftover...
        drop(FileStore::open(home.keys()).unwrap());
        assert!(leftovers(&home).is_empty(), "{point:?}: left at open");
        // ...and so does the next write, of any purpose.
        store.crash_at(Some(CrashPoint::Written));
        svc.rotate(Some("access_token"), true).unwrap_err();
        assert_eq!(leftovers(&home).len(), 1);
        store.crash_at(None);
        svc.rotate(Some("refresh_token"), true).unwrap();
        assert!(leftovers(&home).is_empty(), "{point:?}: left by a write");

        // Signing and verifying still work, through a new process.
        let token = home.ok(&["token", "sign", "--purpose", "access_token"]);
        home.ok(&["token", "verify", "--purpose", "access_token", token.trim()]);
    }
}

#[test]
fn a_keys_path_that_is_not_a_directory_is_reported() {
    let home = Home::new(CONFIG);
    std::fs::write(home.keys(), b"not a directory").unwrap();
    let (status, err) = code(&home.run(&["token", "sign", "--purpose", "access_token"]));
    assert_eq!(status, 2);
    assert!(
        err.contains("is not a directory") && err.contains("keys"),
        "{err}"
    );
    assert_eq!(std::fs::read(home.keys()).unwrap(), b"not a directory");
}

#[test]
fn an_existing_keys_directory_is_tightened_to_0700() {
    let home = Home::new(CONFIG);
    std::fs::create_dir(home.keys()).unwrap();
    std::fs::set_permissions(home.keys(), std::fs::Permissions::from_mode(0o755)).unwrap();
    home.ok(&["token", "sign", "--purpose", "access_token"]);
    let mode = std::fs::metadata(home.keys()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

/// Runs `args`, waiting at most a minute: a hang is a failure, not a stuck test.
fn run_bounded(home: &Home, args: &[&str]) -> (i32, String) {
    let child = home
        .cmd(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(out) => code(&out.unwrap()),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            panic!("signet {args:?} hung on a hostile keys directory");
        }
    }
}

#[test]
fn only_regular_keyring_files_of_sane_size_are_read() {
    let home = bootstrapped();
    let kid = FileStore::open(home.keys())
        .unwrap()
        .load("access_token")
        .unwrap()
        .unwrap()
        .keys[0]
        .kid
        .clone();
    let path = home.keys().join("refresh_token.json");
    // A FIFO: reading it would block for ever, with the store's lock held.
    std::fs::remove_file(&path).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    let (status, err) = run_bounded(&home, &["keys", "rotate", "--force"]);
    assert_eq!(status, 2, "{err}");
    assert!(
        err.contains("refresh_token.json is not a regular file"),
        "{err}"
    );
    // A key of another purpose can still be revoked.
    let (status, err) = run_bounded(&home, &["keys", "revoke", &kid]);
    assert_eq!(status, 0, "{err}");

    // A symbolic link (here to an endless device) is not followed.
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    let (status, err) = run_bounded(&home, &["keys", "list"]);
    assert_eq!(status, 2, "{err}");
    assert!(
        err.contains("refresh_token.json is a symbolic link"),
        "{err}"
    );

    // A regular file far larger than any keyring is refused unread.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, vec![b' '; 2 * 1024 * 1024]).unwrap();
    let (status, err) = run_bounded(&home, &["keys", "list"]);
    assert_eq!(status, 2, "{err}");
    assert!(err.contains("is larger than 1048576 bytes"), "{err}");
}
