//! The configuration: file, environment and flag precedence, defaults, and
//! refusals that name the bad value.

use crate::util::{run, stderr};
use clap::Parser;
use std::path::Path;
use trellisd::config::{Args, Config, DEFAULT_SOCKET, DEFAULT_STATE_DIR, LogFormat};

const FILE: &str = r#"
node = "from-file"
state_dir = "/srv/trellis"
socket = "/srv/trellis.sock"

[log]
format = "json"
level = "debug"

[metrics]
listen = "127.0.0.1:9464"
"#;

fn args(argv: &[&str]) -> Args {
    Args::try_parse_from(std::iter::once("trellisd").chain(argv.iter().copied()))
        .expect("arguments parse")
}

fn resolve(argv: &[&str], file: &str) -> anyhow::Result<Config> {
    Config::resolve(&args(argv), file, Path::new("test.toml"))
}

fn error(argv: &[&str], file: &str) -> String {
    format!("{:#}", resolve(argv, file).expect_err("refused"))
}

#[test]
fn the_file_is_used_when_no_flag_says_otherwise() {
    let c = resolve(&["--log-level=debug"], FILE).unwrap();
    assert_eq!(c.node, "from-file");
    assert_eq!(c.state_dir, Path::new("/srv/trellis"));
    assert_eq!(c.store_path(), Path::new("/srv/trellis/trellis.redb"));
    assert_eq!(c.socket, Path::new("/srv/trellis.sock"));
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.metrics, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(c.tcp, None);
}

#[test]
fn flags_override_the_file() {
    let c = resolve(
        &[
            "--node=flag",
            "--state-dir=/tmp/s",
            "--socket=/tmp/s.sock",
            "--log-format=human",
            "--log-level=warn",
            "--metrics-addr=127.0.0.1:1",
        ],
        FILE,
    )
    .unwrap();
    assert_eq!(c.node, "flag");
    assert_eq!(c.state_dir, Path::new("/tmp/s"));
    assert_eq!(c.socket, Path::new("/tmp/s.sock"));
    assert_eq!(c.log.format, LogFormat::Human);
    assert_eq!(c.log.level, "warn");
    assert_eq!(c.metrics, Some("127.0.0.1:1".parse().unwrap()));
}

#[test]
fn an_empty_file_means_defaults() {
    let c = resolve(&["--node=n", "--log-level=info"], "").unwrap();
    assert_eq!(c.state_dir, Path::new(DEFAULT_STATE_DIR));
    assert_eq!(c.socket, Path::new(DEFAULT_SOCKET));
    assert_eq!(c.log.format, LogFormat::Human);
    assert_eq!(c.metrics, None);
    assert_eq!(c.tcp, None);
}

#[test]
fn the_node_defaults_to_the_host_name() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let c = resolve(&[], "").unwrap();
    assert_eq!(c.node, host.trim());
}

#[test]
fn bad_values_in_the_file_are_named() {
    for (file, named) in [
        ("[log]\nformat = \"xml\"\n", "xml"),
        ("[metrics]\nlisten = \"nowhere\"\n", "listen"),
        ("nod = \"x\"\n", "nod"),
        ("[tcp]\nlisten = 7443\n", "listen"),
        ("node = \"has space\"\n", "has space"),
        ("node = [", "test.toml"),
    ] {
        let err = error(&[], file);
        assert!(err.contains(named), "{file:?}: {err}");
        let first = err.lines().next().unwrap_or_default();
        trellis_testlab::report::record(
            "trellisd configuration",
            &format!("config file `{}`", file.escape_default()),
            &format!("refused before anything starts, naming it: \"{first}\""),
        );
    }
}

#[test]
fn tcp_without_tls_is_refused_unless_asked_for() {
    let err = error(&["--node=n", "--listen=0.0.0.0:7443"], "");
    assert!(
        err.contains("0.0.0.0:7443") && err.contains("--insecure-tcp"),
        "{err}"
    );
    let file = "[tcp]\nlisten = \"127.0.0.1:7443\"\n";
    assert!(error(&["--node=n"], file).contains("no TLS"));

    let c = resolve(&["--node=n", "--insecure-tcp"], file).unwrap();
    let tcp = c.tcp.expect("tcp");
    assert_eq!(tcp.listen, "127.0.0.1:7443".parse().unwrap());
    assert_eq!(tcp.tls, None);
}

#[test]
fn tls_needs_both_halves_and_a_listener() {
    let listen = "--listen=127.0.0.1:7443";
    assert!(error(&["--node=n", listen, "--tls-cert=/c"], "").contains("without a key"));
    assert!(error(&["--node=n", listen, "--tls-key=/k"], "").contains("without a certificate"));
    assert!(error(&["--node=n", "--tls-cert=/c", "--tls-key=/k"], "").contains("no TCP listen"));
    assert!(error(&["--node=n", "--insecure-tcp"], "").contains("--insecure-tcp"));
    let file = "[tcp]\nlisten = \"[::1]:7443\"\ntls_cert = \"/c\"\ntls_key = \"/k\"\n";
    let tls = resolve(&["--node=n", "--tls-client-ca=/ca"], file)
        .unwrap()
        .tcp
        .unwrap()
        .tls
        .unwrap();
    assert_eq!(
        (tls.cert.to_str(), tls.key.to_str()),
        (Some("/c"), Some("/k"))
    );
    assert_eq!(tls.client_ca.as_deref(), Some(Path::new("/ca")));
}

#[test]
fn the_dist_example_parses_as_is_and_uncommented() {
    let text = include_str!("../../../dist/trellisd.toml");
    let c = resolve(&["--node=n", "--log-level=info"], text).unwrap();
    assert_eq!(c.socket, Path::new(DEFAULT_SOCKET));
    // Every "# key = value" line switched on: each key must be known.
    let on: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(kv) if is_setting(kv) => format!("{kv}\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    let c = resolve(&["--log-level=info"], &on).unwrap_or_else(|e| panic!("{e:#}\n{on}"));
    assert_eq!(c.node, "host1");
    assert!(c.tcp.unwrap().tls.unwrap().client_ca.is_some());
    assert_eq!(c.metrics, Some("127.0.0.1:9464".parse().unwrap()));
    let limits = (c.limits.max_in_flight.get(), c.limits.max_watches.get());
    assert_eq!(limits, (512, 1024), "the defaults, as documented");
    // The BGP example ("#: " lines) is a valid [bgp] section too.
    let bgp: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("#:"))
        .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
        .collect();
    let c = resolve(&["--node=n"], &bgp).unwrap_or_else(|e| panic!("{e:#}\n{bgp}"));
    let b = c.bgp.expect("the example turns BGP on");
    assert_eq!((b.speaker.local_as, b.peers.len()), (64512, 1));
    assert_eq!(b.peers[0].md5_password.as_deref(), Some("secret"));
}

/// `key = value` with a lowercase key: a commented-out setting, not prose.
fn is_setting(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(k, _)| {
        !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    })
}

#[test]
fn the_binary_applies_flag_over_env_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(&file, FILE).unwrap();
    let file = file.to_str().unwrap();
    let print = |argv: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["--config", file, "--print-config"];
        all.extend_from_slice(argv);
        let out = run(&all, env);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(print(&[], &[]).contains("node = \"from-file\""));
    let env = [("TRELLISD_NODE", "from-env"), ("RUST_LOG", "trace")];
    let out = print(&[], &env);
    assert!(
        out.contains("node = \"from-env\"") && out.contains("level = \"trace\""),
        "{out}"
    );
    let out = print(&["--node", "from-flag", "--log-level", "error"], &env);
    assert!(
        out.contains("node = \"from-flag\"") && out.contains("level = \"error\""),
        "{out}"
    );
}

#[test]
fn the_binary_refuses_bad_configurations_by_name() {
    let out = run(&["--metrics-addr", "nowhere"], &[]);
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));

    let out = run(&["--config", "/nonexistent/trellisd.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent/trellisd.toml"));

    // The log filter is checked with the config (RUST_LOG is kept out by `run`).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(&file, "[log]\nlevel = \"info,x=loud\"\n").unwrap();
    let out = run(&["--node=n", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("info,x=loud"), "{}", stderr(&out));

    let out = run(&["--node=n", "--max-in-flight", "0"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("--max-in-flight 0: must be at least 1"),
        "{err}"
    );

    let out = run(&["--node=n", "--listen=127.0.0.1:7443"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("trellisd: error: ") && err.contains("--insecure-tcp"),
        "{err}"
    );
}
