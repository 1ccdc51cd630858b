//! Unit tests of the command line: flags, defaults, and local refusals.

use clap::CommandFactory;
use clap::error::ErrorKind;

use super::*;
use crate::parse::{PortSpec, Proto};
use crate::run::{attach_request, create_request, keep_list};

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("netctl").chain(args.iter().copied()))
}

#[test]
fn the_command_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn defaults_are_the_socket_and_a_table() {
    let cli = parse(&["status"]).unwrap();
    // TRELLIS_SOCKET may be set where the tests run; the flag always wins.
    if std::env::var_os("TRELLIS_SOCKET").is_none() {
        assert_eq!(cli.conn.socket, PathBuf::from(DEFAULT_SOCKET));
    }
    assert_eq!(cli.output, Format::Table);
    let cli = parse(&["network", "ls", "-o", "yaml", "--socket", "/tmp/t.sock"]).unwrap();
    assert_eq!(cli.output, Format::Yaml);
    assert_eq!(cli.conn.socket, PathBuf::from("/tmp/t.sock"));
    assert!(parse(&["-o", "xml", "status"]).is_err());
}

#[test]
fn network_create_builds_the_spec() {
    let cli = parse(&[
        "network",
        "create",
        "pods",
        "--mode",
        "routed",
        "--subnet",
        "10.244.0.0/16",
        "--subnet",
        "fd00::/48",
        "--no-outgoing-nat",
        "--mtu",
        "1450",
    ])
    .unwrap();
    let Command::Network(NetworkCmd::Create(args)) = cli.command else {
        panic!("not network create");
    };
    let spec = create_request(args).spec.unwrap();
    assert_eq!(spec.name, "pods");
    assert_eq!(spec.mode, trellis_proto::v1::NetworkMode::Routed as i32);
    assert_eq!(spec.subnets, ["10.244.0.0/16", "fd00::/48"]);
    assert!(!spec.outgoing_nat);
    assert_eq!(spec.mtu, 1450);
    assert_eq!(spec.gateway, "");
}

#[test]
fn outgoing_nat_defaults_on_and_the_last_flag_wins() {
    let nat = |extra: &[&str]| {
        let mut args = vec!["network", "create", "n"];
        args.extend_from_slice(extra);
        match parse(&args).unwrap().command {
            Command::Network(NetworkCmd::Create(a)) => a.nat(),
            _ => unreachable!(),
        }
    };
    assert!(nat(&[]));
    assert!(!nat(&["--no-outgoing-nat"]));
    assert!(nat(&["--no-outgoing-nat", "--outgoing-nat"]));
    assert!(!nat(&["--outgoing-nat", "--no-outgoing-nat"]));
    assert!(parse(&["network", "create", "n", "--mtu", "0"]).is_err());
}

#[test]
fn routable_turns_outgoing_nat_off_and_refuses_its_contradictions() {
    let create = |extra: &[&str]| -> Result<_, clap::Error> {
        let mut args = vec!["network", "create", "direct", "--subnet", "10.9.0.0/24"];
        args.extend_from_slice(extra);
        match parse(&args)?.command {
            Command::Network(NetworkCmd::Create(a)) => Ok(create_request(a).spec.unwrap()),
            _ => unreachable!(),
        }
    };
    let spec = create(&["--routable"]).unwrap();
    assert!(spec.routable && !spec.outgoing_nat, "{spec:?}");
    let spec = create(&["--routable", "--no-outgoing-nat"]).unwrap();
    assert!(spec.routable && !spec.outgoing_nat, "{spec:?}");
    let spec = create(&[]).unwrap();
    assert!(!spec.routable && spec.outgoing_nat, "{spec:?}");
    for bad in [
        &["--routable", "--outgoing-nat"][..],
        &["--internal", "--routable"],
    ] {
        let e = create(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict, "{bad:?}: {e}");
    }
}

fn attach(extra: &[&str]) -> Result<Attach, clap::Error> {
    let mut args = vec![
        "endpoint",
        "attach",
        "--network",
        "front",
        "--container",
        "web1",
        "--netns",
        "/run/netns/web1",
    ];
    args.extend_from_slice(extra);
    match parse(&args)?.command {
        Command::Endpoint(EndpointCmd::Attach(a)) => Ok(a),
        _ => unreachable!(),
    }
}

#[test]
fn attach_collects_ports_addresses_and_labels() {
    let a = attach(&[
        "-p",
        "8081:80",
        "--publish",
        "53:53/udp",
        "--ip",
        "192.168.169.9",
        "--label",
        "app=web",
        "--label",
        "tier=front",
        "--ifname",
        "eth1",
    ])
    .unwrap();
    assert_eq!(
        a.publish[1].0,
        [PortSpec {
            protocol: Proto::Udp,
            host_ip: None,
            host_port: 53,
            container_port: 53
        }]
    );
    let req = attach_request(a).unwrap();
    assert_eq!(req.ifname, "eth1");
    assert_eq!(req.fixed_addresses, ["192.168.169.9"]);
    assert_eq!(req.labels.len(), 2);
    assert_eq!(req.labels["tier"], "front");
    let ports: Vec<_> = req
        .ports
        .iter()
        .map(|p| (p.protocol, p.host_port, p.container_port))
        .collect();
    let (tcp, udp) = (
        trellis_proto::v1::Protocol::Tcp as i32,
        trellis_proto::v1::Protocol::Udp as i32,
    );
    assert_eq!(ports, [(tcp, 8081, 80), (udp, 53, 53)]);
    assert_eq!(
        attach(&[]).map(|a| a.ifname).unwrap(),
        "",
        "server's default"
    );
}

#[test]
fn bad_specs_are_refused_before_connecting() {
    let err = attach(&["-p", "8081:0"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueValidation);
    assert_eq!(err.exit_code(), 2);
    let text = err.to_string();
    assert!(
        text.contains("publish spec \"8081:0\": container port \"0\" is out of range"),
        "{text}"
    );
    let err = attach(&["--label", "novalue"]).unwrap_err();
    assert!(err.to_string().contains("expected KEY=VALUE"), "{err}");
    let dup = attach(&["--label", "a=1", "--label", "a=2"]).unwrap();
    let err = attach_request(dup).unwrap_err();
    assert_eq!(crate::exit::report(&err).1, std::process::ExitCode::from(2));
    assert_eq!(
        attach(&["--container"]).unwrap_err().kind(),
        ErrorKind::InvalidValue
    );
}

#[test]
fn gc_must_be_told_what_to_keep() {
    let err = parse(&["gc"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    assert!(parse(&["gc", "--all", "--keep", "c1"]).is_err());
    let Command::Gc(args) = parse(&["gc", "--all"]).unwrap().command else {
        unreachable!()
    };
    assert!(keep_list(&args).unwrap().is_empty());
}

#[test]
fn gc_can_keep_to_one_network() {
    let Command::Gc(args) = parse(&["gc", "--all", "--network", "web"]).unwrap().command else {
        unreachable!()
    };
    assert_eq!(args.network.as_deref(), Some("web"));
    // What to keep must still be said.
    let err = parse(&["gc", "--network", "web"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
}

#[test]
fn gc_keeps_flags_and_file_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keep");
    std::fs::write(&file, "# from the runtime\nc2/eth1\nc3\n").unwrap();
    let file = file.to_str().unwrap();
    let Command::Gc(args) = parse(&["gc", "--keep", "c1/eth0", "--keep-file", file])
        .unwrap()
        .command
    else {
        unreachable!()
    };
    let keep: Vec<_> = keep_list(&args)
        .unwrap()
        .into_iter()
        .map(|a| format!("{}/{}", a.container_id, a.ifname))
        .collect();
    assert_eq!(keep, ["c1/eth0", "c2/eth1", "c3/"]);
    assert!(parse(&["gc", "--keep", "c1/"]).is_err());
}

#[test]
fn endpoint_refs_and_filters() {
    let Command::Check(r) = parse(&["check", "web1", "--ifname", "eth1"])
        .unwrap()
        .command
    else {
        unreachable!()
    };
    assert_eq!((r.container.as_str(), r.ifname.as_str()), ("web1", "eth1"));
    let Command::Endpoint(EndpointCmd::Ls(f)) =
        parse(&["endpoint", "ls", "--network", "front", "--label", "app=web"])
            .unwrap()
            .command
    else {
        unreachable!()
    };
    assert_eq!(f.network.as_deref(), Some("front"));
    assert_eq!(f.labels, [("app".to_string(), "web".to_string())]);
    assert!(
        parse(&["endpoint", "detach"]).is_err(),
        "container is required"
    );
    assert!(parse(&["network", "rm"]).is_err(), "a name is required");
}

#[test]
fn completions_for_every_shell_mention_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let Command::Completions { shell } = parse(&["completions", shell]).unwrap().command else {
            unreachable!()
        };
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "netctl", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("attach") && text.contains("gc"), "{shell:?}");
    }
}
