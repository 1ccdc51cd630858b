//! Every crate in the dependency graph carries a permissive licence.
//!
//! The same allow-list as `deny.toml`, checked from `cargo metadata` so that it
//! runs on every `cargo test` without installing cargo-deny.

use std::process::Command;

const ALLOWED: &[&str] = &[
    "Apache-2.0",
    "Apache-2.0 WITH LLVM-exception",
    "MIT",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "CC0-1.0",
    "Unlicense",
    "0BSD",
    "BSL-1.0",
];

/// True if an SPDX expression can be satisfied by allowed licences alone:
/// every `AND` term must hold; of an `OR`, one alternative suffices.
fn acceptable(expr: &str) -> bool {
    let expr = expr.replace(['(', ')'], " ");
    expr.split(" OR ")
        .any(|alt| alt.split(" AND ").all(|term| allowed_term(term.trim())))
        || expr.split('/').all(|t| allowed_term(t.trim())) && expr.contains('/')
}

fn allowed_term(term: &str) -> bool {
    ALLOWED.contains(&term)
}

#[test]
fn spdx_logic() {
    assert!(acceptable("MIT OR Apache-2.0"));
    assert!(acceptable("(MIT OR Apache-2.0) AND Unicode-3.0"));
    assert!(acceptable("MIT/Apache-2.0"));
    assert!(!acceptable("GPL-3.0-or-later"));
    assert!(!acceptable("MIT AND GPL-2.0-only"));
    assert!(acceptable("GPL-2.0-only OR MIT"));
}

#[test]
fn every_dependency_has_a_permissive_licence() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--all-features",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    assert!(
        packages.len() > 20,
        "suspiciously few packages: {}",
        packages.len()
    );
    let bad: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            let name = p["name"].as_str().unwrap_or("?");
            match p["license"].as_str() {
                Some(l) if acceptable(l) => None,
                other => Some(format!("{name} {}: {other:?}", p["version"])),
            }
        })
        .collect();
    assert!(
        bad.is_empty(),
        "non-permissive or missing licences:\n{}",
        bad.join("\n")
    );
}
