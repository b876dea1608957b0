//! The configuration file. Properties: nothing panics; a file is refused
//! with an error that names a field or the file, or it loads, and then the
//! configuration it renders (`config check`) loads again to the same
//! rendering.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet::clock::UnixTime;
use signet::config::ConfigError;

const NOW: UnixTime = UnixTime(1_795_910_400);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match signet::fuzzing::config(text, NOW) {
        Err(ConfigError::Invalid { field, reason }) => {
            assert!(!field.is_empty() && !reason.is_empty());
        }
        Err(ConfigError::Parse { message, .. }) => assert!(!message.is_empty()),
        Err(other) => panic!("unexpected error kind: {other:?}"),
        Ok(config) => {
            let rendered = config.to_toml();
            let again = signet::fuzzing::config(&rendered, NOW)
                .unwrap_or_else(|e| panic!("the rendered configuration does not load: {e}\n{rendered}"));
            assert_eq!(again.to_toml(), rendered);
        }
    }
});
