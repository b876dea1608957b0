//! A keyring document read from disk or the database (possibly tampered).
//! Properties: nothing panics; a document is either refused with a
//! `Corrupt` error naming its location, or it parses, passes the integrity
//! checks and survives a write and a read unchanged; and it never
//! authenticates under a master key unless it is the fixture itself.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use signet::storage::StoreError;
use signet::storage::seal::MasterKeys;

const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/backend-aws-lc-rs/keys/access_token.json");

static MASTER: LazyLock<MasterKeys> = LazyLock::new(|| {
    MasterKeys::parse("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").expect("the tests' master key")
});

fuzz_target!(|data: &[u8]| {
    match signet::fuzzing::keyring_document(data, "access_token") {
        Err(StoreError::Corrupt { location, .. }) => assert_eq!(location, "(fuzz)"),
        Err(other) => panic!("refused with something else than Corrupt: {other:?}"),
        Ok(ring) => {
            let bytes = signet::fuzzing::keyring_bytes(&ring).expect("encodes");
            let again = signet::fuzzing::keyring_document(&bytes, "access_token").expect("re-reads");
            assert_eq!(again, ring);
            if MASTER.check(&ring).is_ok() {
                let fixture = signet::fuzzing::keyring_document(FIXTURE, "access_token").expect("fixture");
                assert_eq!(ring, fixture, "a document other than the fixture authenticated");
            }
        }
    }
});
