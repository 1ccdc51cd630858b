//! trellis-cni's inputs from a container runtime: `CNI_ARGS` and the other
//! `CNI_*` variables (`env::read`, `env::parse_args`) and the network
//! configuration on stdin (`spec::NetConf`, serde_json), taken as the
//! plugin's `run` takes them — the version checked, VERSION answered — and
//! through every conversion that needs no trellisd (`convert`): the attach
//! request (ports, addresses, MAC), the conflist's own checks, the network
//! spec to create and whether it agrees with what it creates, the result
//! and error documents written back, CHECK's comparison with `prevResult`.
//!
//! trellis-cni is a binary with no library: its modules are compiled into
//! this target as they are (`#[path]` below), so the plugin keeps its shape
//! and the target calls exactly its code.
//!
//! Input: the first byte picks `CNI_COMMAND`; then `CNI_ARGS` up to the
//! first newline; the rest is stdin.
#![no_main]
#![allow(dead_code)]

#[path = "../../bins/trellis-cni/src/convert.rs"]
mod convert;
#[path = "../../bins/trellis-cni/src/env.rs"]
mod env;
#[path = "../../bins/trellis-cni/src/spec.rs"]
mod spec;

use env::Command;
use libfuzzer_sys::fuzz_target;
use spec::{CniError, NetConf};
use trellis_proto::v1 as pb;

const COMMANDS: [Option<&str>; 8] = [
    Some("ADD"),
    Some("DEL"),
    Some("CHECK"),
    Some("GC"),
    Some("STATUS"),
    Some("VERSION"),
    Some("add"),
    None,
];

/// The plugin's failure, as `main` writes it.
fn failed(e: &CniError, version: &str) {
    let _ = e.to_string();
    let _ = e.to_json(version).to_string();
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (args, stdin) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    // An environment value is text without NUL (`std::env::var` gives
    // nothing for one that is not UTF-8).
    let args = std::str::from_utf8(args)
        .ok()
        .filter(|a| !a.contains('\0'))
        .map(str::to_owned);
    let command = COMMANDS[usize::from(pick) % COMMANDS.len()];
    let get = |k: &str| match k {
        "CNI_COMMAND" => command.map(str::to_owned),
        "CNI_CONTAINERID" => Some("c0ffee".to_owned()),
        "CNI_NETNS" => Some("/run/netns/fuzz".to_owned()),
        "CNI_IFNAME" => Some("eth0".to_owned()),
        "CNI_ARGS" => args.clone(),
        _ => None,
    };
    let env = match env::read(get) {
        Ok(e) => e,
        Err(e) => return failed(&e, spec::LATEST),
    };
    if env.command == Command::Version {
        let asked = serde_json::from_slice::<serde_json::Value>(stdin)
            .ok()
            .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned));
        let _ = spec::version_info(asked.as_deref()).to_string();
        return;
    }
    let conf: NetConf = match serde_json::from_slice(stdin) {
        Ok(c) => c,
        Err(e) => {
            return failed(
                &CniError::new(spec::code::DECODE, e.to_string()),
                spec::LATEST,
            );
        }
    };
    let version = if spec::SUPPORTED.contains(&conf.cni_version.as_str()) {
        conf.cni_version.clone()
    } else {
        spec::LATEST.to_owned()
    };
    if let Err(e) = spec::check_version(&conf.cni_version) {
        return failed(&e, &version);
    }
    if let Err(e) = verb(&conf, &env) {
        failed(&e, &version);
    }
});

/// `verb` and the plugin's calls, with trellisd's answers made up: the
/// network is the one the conflist creates, the endpoint a fixed one.
fn verb(conf: &NetConf, env: &env::Env) -> Result<(), CniError> {
    if matches!(env.command, Command::Add | Command::Check) {
        convert::attach_request(conf, env)?;
        convert::validate(conf)?;
    }
    if env.command == Command::Gc {
        convert::network_name(conf)?;
        let _: Vec<_> = conf
            .valid_attachments
            .iter()
            .chain(conf.attachments.iter())
            .flatten()
            .map(|a| (a.container_id.clone(), a.ifname.clone()))
            .collect();
    }
    let spec = convert::network_spec(conf)?;
    let network = pb::Network {
        spec: Some(spec),
        ..Default::default()
    };
    // ADD creates the network from the conflist, then checks that they
    // agree: they must, or ADD would refuse the network it just made.
    if let Err(e) = convert::agrees(conf, &network) {
        panic!("the network made from the conflist does not agree with it: {e}");
    }
    let ep = pb::Endpoint {
        network: network
            .spec
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default(),
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        netns: env.netns.clone(),
        host_ifname: "tr0123456789abc".into(),
        mac: "02:00:00:00:00:01".into(),
        addresses: vec!["10.0.0.2/24".into(), "fd00::2/64".into()],
        gateways: vec!["10.0.0.1".into(), "fd00::1".into()],
        routes: vec!["0.0.0.0/0".into(), "::/0".into()],
        ..Default::default()
    };
    let result = convert::result(conf, &network, &ep)?;
    let _ = result.to_json(&conf.cni_version).to_string();
    if let Some(prev) = &conf.prev_result {
        convert::prev_result_matches(prev, &ep)?;
    }
    Ok(())
}
