//! trellisd's config file (`/etc/trellis/trellisd.toml`): TOML text
//! resolved with no flags by `trellisd::config::Config::resolve` — parsed,
//! every section checked (TCP and TLS, cluster, limits, BGP speaker and
//! peers, the log filter) — and, when accepted, printed back as
//! `trellisd --print-config` prints it.
//!
//! (trellis-controller has no config file: its settings are flags.)
//!
//! Input: the file's bytes (not UTF-8: refused as the daemon's read is).
#![no_main]

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::LazyLock;
use trellisd::config::{Args, Config};

/// No flags, and no environment: a `TRELLISD_*` variable of the machine
/// running the fuzzer must not decide what the file may say.
static ARGS: LazyLock<Args> = LazyLock::new(|| {
    assert!(
        std::env::vars().all(|(k, _)| !k.starts_with("TRELLISD_") && k != "RUST_LOG"),
        "unset TRELLISD_* and RUST_LOG to fuzz the config file"
    );
    Args::try_parse_from(["trellisd"]).expect("no flags parse")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Without `node = …` the host's name is read, as the daemon does.
    if let Ok(cfg) = Config::resolve(&ARGS, text, Path::new("fuzz.toml")) {
        toml::to_string(&cfg).expect("a resolved config prints");
    }
});
