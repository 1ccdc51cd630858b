//! Unit tests of the controller's command line: every subcommand's flags,
//! the requests they build, and local refusals.

use std::path::PathBuf;

use clap::Parser;
use clap::error::ErrorKind;
use trellis_proto::v1;

use super::*;
use crate::cli::{Cli, Command, DEFAULT_CONTROLLER, Format};
use crate::cluster::run::{
    blocks_request, cnet_request, ipam_release_request, pool_request, release_request,
};
use crate::parse::Address;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("netctl").chain(args.iter().copied()))
}

/// The controller command of `netctl ARGS`.
fn cmd(args: &[&str]) -> ControllerCmd {
    match parse(args).unwrap().command {
        Command::Controller(c) => c,
        other => panic!("{args:?} is not a controller command: {other:?}"),
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn the_controller_is_a_socket_by_default_or_any_address() {
    let cli = parse(&["cluster", "status"]).unwrap();
    // NETCTL_CONTROLLER may be set where the tests run; the flag always wins.
    if std::env::var_os("NETCTL_CONTROLLER").is_none() {
        let default = Address::Unix(PathBuf::from(DEFAULT_CONTROLLER));
        assert_eq!(cli.conn.controller, default);
    }
    let at = |addr: &str| parse(&["--controller", addr, "pool", "ls"]).map(|c| c.conn.controller);
    let sock = Address::Unix(PathBuf::from("/tmp/c.sock"));
    assert_eq!(at("unix:/tmp/c.sock").unwrap(), sock);
    assert_eq!(at("/tmp/c.sock").unwrap(), sock);
    let url = "https://ctl1:7444";
    assert_eq!(at(url).unwrap(), Address::Url(url.into()));
    let err = at("tcp://ctl1:7444").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueValidation);
    // Global, like -o and the TLS options: accepted after the subcommand.
    let cli = parse(&[
        "node",
        "ls",
        "-o",
        "json",
        "--controller",
        url,
        "--ca",
        "ca.pem",
    ])
    .unwrap();
    assert_eq!(cli.output, Format::Json);
    assert_eq!(cli.conn.controller, Address::Url(url.into()));
    assert_eq!(cli.conn.ca, Some(PathBuf::from("ca.pem")));
}

#[test]
fn pool_create_builds_the_spec() {
    let ControllerCmd::Pool(PoolCmd::Create(args)) = cmd(&[
        "pool",
        "create",
        "pods",
        "--prefix",
        "10.244.0.0/16",
        "--block-size",
        "/27",
        "--mode",
        "bridge",
        "--outgoing-nat",
        "--max-blocks-per-node",
        "8",
    ]) else {
        unreachable!()
    };
    assert_eq!(args.prefix, net("10.244.0.0/16"));
    let spec = pool_request(args).unwrap().spec.unwrap();
    let want = v1::PoolSpec {
        name: "pods".into(),
        prefix: "10.244.0.0/16".into(),
        block_size: 27,
        mode: v1::PoolMode::Bridge as i32,
        outgoing_nat: true,
        max_blocks_per_node: 8,
    };
    assert_eq!(spec, want);
}

#[test]
fn pool_create_defaults_leave_the_controller_to_choose() {
    let create = |extra: &[&str]| {
        let mut args = vec!["pool", "create", "p6", "--prefix", "fd00:10:244:0::/56"];
        args.extend_from_slice(extra);
        match cmd(&args) {
            ControllerCmd::Pool(PoolCmd::Create(a)) => pool_request(a),
            _ => unreachable!(),
        }
    };
    let spec = create(&[]).unwrap().spec.unwrap();
    assert_eq!(spec.prefix, "fd00:10:244::/56", "sent in canonical form");
    assert_eq!(spec.mode, v1::PoolMode::Routed as i32);
    assert_eq!((spec.block_size, spec.max_blocks_per_node), (0, 0));
    assert!(!spec.outgoing_nat);
    assert_eq!(
        create(&["--block-size", "122"])
            .unwrap()
            .spec
            .unwrap()
            .block_size,
        122
    );
    // A block that cannot fit the prefix is refused before connecting.
    let err = create(&["--block-size", "48"]).unwrap_err();
    let (line, code) = crate::exit::report(&err);
    assert_eq!(code, std::process::ExitCode::from(2));
    assert_eq!(
        line,
        "--block-size /48 is shorter than the pool's prefix fd00:10:244::/56"
    );
    let ControllerCmd::Pool(PoolCmd::Create(v4)) = cmd(&[
        "pool",
        "create",
        "p",
        "--prefix",
        "10.0.0.0/8",
        "--block-size",
        "33",
    ]) else {
        unreachable!()
    };
    let err = pool_request(v4).unwrap_err();
    assert_eq!(
        crate::exit::report(&err).0,
        "--block-size /33 is longer than an IPv4 address (/32)"
    );
}

#[test]
fn pool_create_refuses_bad_values_before_connecting() {
    let bad = |extra: &[&str]| {
        let mut args = vec!["pool", "create", "p"];
        args.extend_from_slice(extra);
        parse(&args).unwrap_err()
    };
    assert_eq!(
        bad(&[]).kind(),
        ErrorKind::MissingRequiredArgument,
        "--prefix"
    );
    let err = bad(&["--prefix", "10.244.0.1/16"]);
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("has host bits set"), "{err}");
    assert!(
        bad(&["--prefix", "10.244.0.0"])
            .to_string()
            .contains("ADDRESS/LENGTH")
    );
    let sized = |size| bad(&["--prefix", "10.0.0.0/8", "--block-size", size]);
    assert_eq!(sized("0").kind(), ErrorKind::ValueValidation);
    assert_eq!(sized("129").kind(), ErrorKind::ValueValidation);
    let moded = bad(&["--prefix", "10.0.0.0/8", "--mode", "overlay"]);
    assert_eq!(moded.kind(), ErrorKind::InvalidValue);
    let capped = bad(&["--prefix", "10.0.0.0/8", "--max-blocks-per-node", "0"]);
    assert_eq!(capped.kind(), ErrorKind::ValueValidation);
}

#[test]
fn pool_and_cnet_get_ls_rm() {
    for noun in ["pool", "cnet", "cluster-network"] {
        let name = |c: ControllerCmd| match c {
            ControllerCmd::Pool(PoolCmd::Get { name }) => name,
            ControllerCmd::Cnet(CnetCmd::Get { name }) => name,
            other => panic!("{other:?}"),
        };
        assert_eq!(name(cmd(&[noun, "get", "pods"])), "pods");
        assert_eq!(name(cmd(&[noun, "inspect", "pods"])), "pods");
        assert!(parse(&[noun, "get"]).is_err(), "{noun}: a name is required");
        assert!(parse(&[noun, "get", "a", "b"]).is_err(), "{noun}: one name");
        for ls in ["ls", "list"] {
            let listed = matches!(
                cmd(&[noun, ls]),
                ControllerCmd::Pool(PoolCmd::Ls) | ControllerCmd::Cnet(CnetCmd::Ls)
            );
            assert!(listed, "{noun} {ls}");
        }
        let names = match cmd(&[noun, "rm", "a", "b"]) {
            ControllerCmd::Pool(PoolCmd::Rm { names }) => names,
            ControllerCmd::Cnet(CnetCmd::Rm { names }) => names,
            other => panic!("{other:?}"),
        };
        assert_eq!(names, ["a", "b"]);
        assert!(parse(&[noun, "rm"]).is_err(), "{noun}: a name is required");
    }
}

#[test]
fn cnet_create_builds_the_spec() {
    let ControllerCmd::Cnet(CnetCmd::Create(args)) = cmd(&[
        "cnet", "create", "pods", "--pool", "p4", "--pool", "p6", "--mtu", "1450",
    ]) else {
        unreachable!()
    };
    let spec = cnet_request(args).spec.unwrap();
    let want = v1::ClusterNetworkSpec {
        name: "pods".into(),
        pools: vec!["p4".into(), "p6".into()],
        mtu: 1450,
    };
    assert_eq!(spec, want);
    let ControllerCmd::Cnet(CnetCmd::Create(args)) = cmd(&["cnet", "create", "n", "--pool", "p"])
    else {
        unreachable!()
    };
    assert_eq!(cnet_request(args).spec.unwrap().mtu, 0, "the kernel's");
    let err = parse(&["cnet", "create", "n"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument, "--pool");
    assert!(parse(&["cnet", "create", "n", "--pool", "p", "--mtu", "67"]).is_err());
}

#[test]
fn node_subcommands() {
    assert!(matches!(
        cmd(&["node", "ls"]),
        ControllerCmd::Node(NodeCmd::Ls)
    ));
    let ControllerCmd::Node(NodeCmd::Get { name }) = cmd(&["node", "get", "n1"]) else {
        unreachable!()
    };
    assert_eq!(name, "n1");
    let ControllerCmd::Node(NodeCmd::Endpoints { name, filter }) = cmd(&[
        "node",
        "endpoints",
        "h1",
        "--network",
        "pods",
        "--label",
        "app=web",
    ]) else {
        unreachable!()
    };
    assert_eq!(
        (name.as_str(), filter.network.as_deref()),
        ("h1", Some("pods"))
    );
    assert_eq!(filter.labels, [("app".to_owned(), "web".to_owned())]);
    let ControllerCmd::Node(NodeCmd::Drain { name }) = cmd(&["node", "drain", "n1"]) else {
        unreachable!()
    };
    assert_eq!(name, "n1");
    let rm = |args: &[&str]| match cmd(args) {
        ControllerCmd::Node(NodeCmd::Rm { name, force }) => (name, force),
        other => panic!("{other:?}"),
    };
    assert_eq!(rm(&["node", "rm", "n1"]), ("n1".into(), false));
    assert_eq!(rm(&["node", "rm", "--force", "n1"]), ("n1".into(), true));
    assert_eq!(
        rm(&["node", "remove", "n1", "--force"]),
        ("n1".into(), true)
    );
    for sub in ["get", "drain", "rm", "endpoints"] {
        assert!(
            parse(&["node", sub]).is_err(),
            "node {sub}: a name is required"
        );
    }
}

#[test]
fn block_subcommands() {
    let ls = |args: &[&str]| match cmd(args) {
        ControllerCmd::Block(BlockCmd::Ls(f)) => blocks_request(f),
        other => panic!("{other:?}"),
    };
    assert_eq!(ls(&["block", "ls"]), v1::ListBlocksRequest::default());
    let want = v1::ListBlocksRequest {
        pool: "pods".into(),
        node: "n1".into(),
    };
    assert_eq!(ls(&["block", "ls", "--pool", "pods", "--node", "n1"]), want);

    let ControllerCmd::Block(BlockCmd::Claim(owner)) =
        cmd(&["block", "claim", "--node", "n1", "--pool", "pods"])
    else {
        unreachable!()
    };
    assert_eq!((owner.node.as_str(), owner.pool.as_str()), ("n1", "pods"));
    let err = parse(&["block", "claim", "--node", "n1"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument, "--pool");

    let release = [
        "block",
        "release",
        "--node",
        "n1",
        "--pool",
        "pods",
        "10.244.0.64/26",
    ];
    let ControllerCmd::Block(BlockCmd::Release(args)) = cmd(&release) else {
        unreachable!()
    };
    let want = v1::ReleaseBlockRequest {
        node: "n1".into(),
        pool: "pods".into(),
        prefix: "10.244.0.64/26".into(),
    };
    assert_eq!(release_request(&args), want);
    let err = parse(&[
        "block",
        "release",
        "--node",
        "n1",
        "--pool",
        "pods",
        "10.244.0.65/26",
    ]);
    assert_eq!(err.unwrap_err().kind(), ErrorKind::ValueValidation);
    let err = parse(&["block", "release", "--node", "n1", "--pool", "pods"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument, "PREFIX");
}

#[test]
fn ipam_and_cluster_subcommands() {
    assert!(matches!(
        cmd(&["ipam", "check"]),
        ControllerCmd::Ipam(IpamCmd::Check)
    ));
    let release = |args: &[&str]| match cmd(args) {
        ControllerCmd::Ipam(IpamCmd::Release { prefixes }) => ipam_release_request(&prefixes),
        other => panic!("{other:?}"),
    };
    assert!(
        release(&["ipam", "release"]).prefixes.is_empty(),
        "every releasable block"
    );
    let some = release(&["ipam", "release", "10.244.0.0/26", "fd00:10:244:0:0::/122"]);
    assert_eq!(some.prefixes, ["10.244.0.0/26", "fd00:10:244::/122"]);
    assert!(parse(&["ipam", "release", "10.244.0.0/33"]).is_err());
    assert!(matches!(
        cmd(&["cluster", "status"]),
        ControllerCmd::Cluster(ClusterCmd::Status)
    ));
}

#[test]
fn help_lists_the_controller_commands() {
    let help = <Cli as clap::CommandFactory>::command()
        .render_help()
        .to_string();
    for sub in [
        "pool",
        "cnet",
        "node",
        "block",
        "ipam",
        "cluster",
        "--controller",
    ] {
        assert!(help.contains(sub), "{sub} missing from:\n{help}");
    }
}
