//! Unit tests of the `bgp` command line: every subcommand's flags, the
//! requests they build, and local refusals.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use trellis_proto::v1;

use super::*;
use crate::bgp::run::add_request;
use crate::cli::{Cli, Command, Format};

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("netctl").chain(args.iter().copied()))
}

/// The `bgp` command of `netctl ARGS`.
fn cmd(args: &[&str]) -> BgpCmd {
    match parse(args).unwrap().command {
        Command::Bgp(c) => c,
        other => panic!("{args:?} is not a bgp command: {other:?}"),
    }
}

/// `netctl bgp add 192.0.2.1 EXTRA…`, parsed.
fn add(extra: &[&str]) -> Result<BgpAdd, clap::Error> {
    let mut args = vec!["bgp", "add", "192.0.2.1"];
    args.extend_from_slice(extra);
    match parse(&args)?.command {
        Command::Bgp(BgpCmd::Add(a)) => Ok(a),
        _ => unreachable!(),
    }
}

/// The peer `bgp add` would send.
fn sent(a: BgpAdd) -> v1::BgpPeerConfig {
    add_request(a).unwrap().peer.unwrap()
}

#[test]
fn add_builds_the_peer_from_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "s3cret key\n").unwrap();
    let a = add(&[
        "--as",
        "4200000001",
        "--port",
        "1179",
        "--local-address",
        "192.0.2.11",
        "--next-hop-v4",
        "192.0.2.11",
        "--next-hop-v6",
        "2001:db8:0::11",
        "--community",
        "65000:100",
        "--community",
        "065000:0200",
        "--hold-time",
        "9",
        "--md5-password-file",
        key.to_str().unwrap(),
    ])
    .unwrap();
    let want = v1::BgpPeerConfig {
        address: "192.0.2.1".into(),
        remote_as: 4_200_000_001,
        port: 1179,
        passive: false,
        local_address: "192.0.2.11".into(),
        next_hop_v4: "192.0.2.11".into(),
        next_hop_v6: "2001:db8::11".into(),
        communities: vec!["65000:100".into(), "65000:200".into()],
        hold_time: Some(9),
        md5_password: "s3cret key".into(),
    };
    assert_eq!(sent(a), want);
}

#[test]
fn add_leaves_unset_flags_to_trellisd() {
    let want = v1::BgpPeerConfig {
        address: "2001:db8::1".into(),
        remote_as: 65001,
        ..Default::default()
    };
    let Command::Bgp(BgpCmd::Add(a)) = parse(&["bgp", "add", "2001:db8:0:0::1", "--as", "65001"])
        .unwrap()
        .command
    else {
        unreachable!()
    };
    assert_eq!(sent(a), want, "port 0 and hold time unset: the node's");
    let passive = sent(add(&["--as", "65001", "--passive"]).unwrap());
    assert!(passive.passive);
    let zero = sent(add(&["--as", "65001", "--hold-time", "0"]).unwrap());
    assert_eq!(zero.hold_time, Some(0), "0 is no keepalives, not unset");
}

#[test]
fn add_requires_an_as_and_refuses_bad_values_before_connecting() {
    let err = add(&[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    assert!(err.to_string().contains("--as <ASN>"), "{err}");
    let err = parse(&["bgp", "add", "--as", "65001"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument, "ADDRESS");
    let refused = |extra: &[&str]| {
        let mut args = match extra[0] {
            "--as" => vec![],
            _ => vec!["--as", "65001"],
        };
        args.extend_from_slice(extra);
        add(&args).unwrap_err()
    };
    for bad in [
        &["--as", "0"][..],
        &["--as", "4294967296"],
        &["--port", "0"],
        &["--port", "65536"],
        &["--hold-time", "2"],
        &["--community", "65000"],
        &["--community", "65000:70000"],
        &["--next-hop-v4", "2001:db8::11"],
        &["--next-hop-v6", "192.0.2.11"],
        &["--local-address", "node1"],
    ] {
        let err = refused(bad);
        assert_eq!(err.kind(), ErrorKind::ValueValidation, "{bad:?}: {err}");
        assert_eq!(err.exit_code(), 2);
    }
    let err = refused(&["--hold-time", "2"]);
    assert!(err.to_string().contains("at least 3 seconds"), "{err}");
    let err = parse(&["bgp", "add", "peer1", "--as", "65001"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueValidation, "ADDRESS is an IP");
}

#[test]
fn a_passive_peer_has_no_port_or_local_address() {
    for extra in [&["--port", "1179"][..], &["--local-address", "192.0.2.11"]] {
        let mut args = vec!["--as", "65001", "--passive"];
        args.extend_from_slice(extra);
        let err = add(&args).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict, "{extra:?}: {err}");
    }
}

#[test]
fn the_md5_key_comes_from_a_file_less_its_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let key = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap().to_owned();
        add(&["--as", "65001", "--md5-password-file", &path]).unwrap()
    };
    for (name, text, want) in [
        ("plain", "k3y", "k3y"),
        ("newline", "k3y\n", "k3y"),
        ("crlf", "k3y\r\n", "k3y"),
        ("one-only", "k3y\n\n", "k3y\n"),
        ("spaces-kept", " k 3y \n", " k 3y "),
    ] {
        assert_eq!(sent(key(name, text)).md5_password, want, "{name}");
    }
    // An empty key would be sent as no key: refused, exit 2.
    for (name, text) in [("empty", ""), ("blank", "\n")] {
        let err = add_request(key(name, text)).unwrap_err();
        let (line, code) = crate::exit::report(&err);
        assert_eq!(code, ExitCode::from(2), "{name}");
        assert!(line.ends_with(": the file holds no key"), "{line}");
    }
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    let a = add(&["--as", "65001", "--md5-password-file", missing]).unwrap();
    let (line, code) = crate::exit::report(&add_request(a).unwrap_err());
    assert_eq!(code, ExitCode::from(1), "local I/O");
    assert!(
        line.starts_with(&format!("--md5-password-file {missing}: ")),
        "{line}"
    );
}

#[test]
fn peers_peer_routes_rm() {
    assert!(matches!(cmd(&["bgp", "peers"]), BgpCmd::Peers));
    for verb in ["peer", "inspect"] {
        let BgpCmd::Peer { address } = cmd(&["bgp", verb, "fd00::0:1"]) else {
            unreachable!()
        };
        assert_eq!(address.to_string(), "fd00::1", "{verb}");
        assert!(
            parse(&["bgp", verb]).is_err(),
            "{verb}: an address is required"
        );
    }
    let routes = |args: &[&str]| match cmd(args) {
        BgpCmd::Routes { peer } => peer.map(|p| p.to_string()),
        other => panic!("{other:?}"),
    };
    assert_eq!(routes(&["bgp", "routes"]), None);
    let one = routes(&["bgp", "routes", "--peer", "192.0.2.1"]);
    assert_eq!(one.as_deref(), Some("192.0.2.1"));
    assert!(parse(&["bgp", "routes", "--peer", "router1"]).is_err());
    for verb in ["rm", "remove"] {
        let BgpCmd::Rm { addresses } = cmd(&["bgp", verb, "192.0.2.1", "2001:db8::1"]) else {
            unreachable!()
        };
        assert_eq!(addresses.len(), 2, "{verb}");
        let err = parse(&["bgp", verb]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument, "{verb}");
    }
    assert!(parse(&["bgp"]).is_err(), "a subcommand is required");
}

#[test]
fn bgp_commands_take_the_global_options() {
    let cli = parse(&[
        "bgp",
        "peers",
        "-o",
        "yaml",
        "--endpoint",
        "https://node1:7443",
        "--ca",
        "ca.pem",
    ])
    .unwrap();
    assert_eq!(cli.output, Format::Yaml);
    assert_eq!(cli.conn.endpoint.as_deref(), Some("https://node1:7443"));
    let cli = parse(&["--socket", "/tmp/t.sock", "-o", "json", "bgp", "routes"]).unwrap();
    assert_eq!(cli.output, Format::Json);
    assert_eq!(cli.conn.socket, std::path::PathBuf::from("/tmp/t.sock"));
}

#[test]
fn help_and_completions_list_the_bgp_commands() {
    let help = Cli::command().render_help().to_string();
    assert!(help.contains("bgp"), "{help}");
    let mut bgp = Cli::command();
    let bgp = bgp.find_subcommand_mut("bgp").unwrap();
    let help = bgp.render_help().to_string();
    for sub in ["peers", "peer", "routes", "add", "rm"] {
        assert!(help.contains(sub), "{sub} missing from:\n{help}");
    }
    let mut add = Cli::command();
    let add = add
        .find_subcommand_mut("bgp")
        .and_then(|b| b.find_subcommand_mut("add"))
        .unwrap();
    let help = add.render_long_help().to_string();
    for flag in [
        "--as <ASN>",
        "--port",
        "--passive",
        "--local-address <IP>",
        "--next-hop-v4 <IP>",
        "--next-hop-v6 <IP>",
        "--community <ASN:VALUE>",
        "--hold-time <SECONDS>",
        "--md5-password-file <PATH>",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "netctl", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("md5-password-file"), "{shell:?}");
    }
}
