//! Any text as a configuration file: an error or a config that prints and parses back.
#![no_main]

use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = hep_server::config::Config::parse(Path::new("fuzz.toml"), text) {
        let printed = config.to_toml();
        let again = hep_server::config::Config::parse(Path::new("printed.toml"), &printed)
            .expect("the effective config parses back");
        assert_eq!(again.to_toml(), printed);
    }
});
