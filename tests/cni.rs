//! trellis-cni against a real trellisd (issue 14, item 3): the plugin run
//! exactly as libcni runs it — CNI variables in a clean environment, the
//! configuration on stdin (with `name` and `cniVersion` injected, the
//! runtime's capabilities under `runtimeConfig`, `prevResult` for CHECK and
//! DEL), stdout and stderr read apart — for every verb, in each version,
//! on a trellisd in a namespace of the test's own, containers in
//! namespaces of their own. The paths that need no daemon are in
//! `bins/trellis-cni/tests/protocol.rs`.

mod daemons;

use daemons::{Daemon, binary};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use trellis_testlab::Netns;

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn ok(&self) -> Value {
        assert_eq!(
            self.code, 0,
            "plugin failed: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        if self.stdout.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&self.stdout).expect("stdout is one JSON document")
    }

    fn err(&self) -> (u64, String) {
        assert_ne!(self.code, 0, "expected a failure, got {}", self.stdout);
        let j: Value = serde_json::from_str(&self.stdout).expect("error JSON on stdout");
        (
            j["code"].as_u64().unwrap(),
            format!("{} / {}", j["msg"], j["details"]),
        )
    }
}

/// One CNI call: `verb` for container `id` in `netns`, `conf` on stdin.
fn cni(verb: &str, id: &str, netns: &str, conf: &Value, cni_args: &str) -> Outcome {
    let mut child = Command::new(binary("TRELLIS_CNI_BIN", "trellis-cni"))
        .env_clear()
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", cni_args)
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run trellis-cni");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(conf).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Outcome {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn trellisd(host: &Netns, dir: &Path) -> Daemon {
    let p = |s: &str| dir.join(s).display().to_string();
    Daemon::start(
        host,
        &binary("TRELLISD_BIN", "trellisd"),
        &[
            "--node".into(),
            "cni".into(),
            "--state-dir".into(),
            p("state"),
            "--socket".into(),
            p("trellisd.sock"),
        ],
        dir.join("trellisd.sock"),
        dir.join("trellisd.log"),
    )
}

/// A plugin entry of a conflist as libcni hands it over.
fn conf(version: &str, name: &str, socket: &Path, extra: Value) -> Value {
    let mut c = json!({
        "cniVersion": version,
        "name": name,
        "type": "trellis-cni",
        "socket": socket.display().to_string(),
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// `ip -j addr show eth0` in `ns`: its addresses and MAC.
fn eth0(ns: &Netns) -> (Vec<String>, String) {
    let out = ns.exec_ok(&["ip", "-j", "addr", "show", "eth0"]);
    let j: Value = serde_json::from_str(&out).unwrap();
    let addrs = j[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    (addrs, j[0]["address"].as_str().unwrap().to_owned())
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn every_verb_through_a_real_trellisd() {
    let host = Netns::new("cnih");
    let dir = tempfile::tempdir().unwrap();
    let mut d = trellisd(&host, dir.path());
    let sock = dir.path().join("trellisd.sock");
    let c1 = Netns::new("cni1");
    let c2 = Netns::new("cni2");
    let c3 = Netns::new("cni3");
    let br = |v: &str| {
        conf(
            v,
            "cni-br",
            &sock,
            json!({"mode": "bridge", "subnet": "10.123.0.0/24", "bridge": "cnibr0"}),
        )
    };

    // STATUS: ready, no output.
    assert_eq!(cni("STATUS", "", "", &br("1.1.0"), "").ok(), Value::Null);

    // ADD creates the network from the conflist and attaches; the result
    // is the container's real state.
    let mut add = br("1.1.0");
    add["runtimeConfig"] = json!({
        "portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}],
        "mac": "02:12:34:56:78:9a"
    });
    add["dns"] = json!({"nameservers": ["10.123.0.1"], "search": ["cni.test"]});
    let r = cni("ADD", "c1", &c1.path_str(), &add, "").ok();
    assert_eq!(r["cniVersion"], "1.1.0");
    let ifs = r["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 2, "{r}");
    assert!(ifs[0].get("sandbox").is_none());
    assert_eq!(ifs[1]["name"], "eth0");
    assert_eq!(ifs[1]["sandbox"], c1.path_str());
    assert_eq!(ifs[1]["mac"], "02:12:34:56:78:9a");
    assert_eq!(r["ips"][0]["interface"], 1);
    assert_eq!(r["ips"][0]["gateway"], "10.123.0.1");
    assert_eq!(r["dns"]["search"][0], "cni.test");
    assert!(
        r["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|rt| rt["dst"] == "0.0.0.0/0" && rt["gw"] == "10.123.0.1"),
        "{r}"
    );
    let (addrs, mac) = eth0(&c1);
    assert_eq!(
        addrs,
        vec![r["ips"][0]["address"].as_str().unwrap().to_owned()]
    );
    assert_eq!(mac, "02:12:34:56:78:9a");
    // The host end is in trellisd's namespace.
    host.exec_ok(&["ip", "link", "show", ifs[0]["name"].as_str().unwrap()]);

    // ADD again: the same result.
    let again = cni("ADD", "c1", &c1.path_str(), &add, "").ok();
    assert_eq!(again, r);

    // CHECK with the previous result: fine.
    let mut check = br("1.1.0");
    check["prevResult"] = r.clone();
    assert_eq!(
        cni("CHECK", "c1", &c1.path_str(), &check, "").ok(),
        Value::Null
    );
    let mut wrong = check.clone();
    wrong["prevResult"]["ips"][0]["address"] = "10.123.0.250/24".into();
    let (code, msg) = cni("CHECK", "c1", &c1.path_str(), &wrong, "").err();
    assert_eq!(code, 104, "{msg}");
    assert!(msg.contains("10.123.0.250/24"), "{msg}");

    // Older versions: the result in each one's shape; a fixed address from
    // CNI_ARGS (IgnoreUnknown lets Kubernetes' keys pass).
    let r040 = cni(
        "ADD",
        "c2",
        &c2.path_str(),
        &br("0.4.0"),
        "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.123.0.77",
    )
    .ok();
    assert_eq!(r040["cniVersion"], "0.4.0");
    assert_eq!(r040["ips"][0]["version"], "4");
    assert_eq!(r040["ips"][0]["address"], "10.123.0.77/24");
    assert_eq!(eth0(&c2).0, vec!["10.123.0.77/24".to_owned()]);
    // The `ips` capability, 1.0.0.
    let mut fixed = br("1.0.0");
    fixed["runtimeConfig"] = json!({"ips": ["10.123.0.78/24"]});
    let r100 = cni("ADD", "c3", &c3.path_str(), &fixed, "").ok();
    assert_eq!(r100["cniVersion"], "1.0.0");
    assert!(r100["ips"][0].get("version").is_none());
    assert_eq!(r100["ips"][0]["address"], "10.123.0.78/24");
    // c3's address removed behind trellis's back: CHECK is 104 and says
    // what differs.
    let mut check3 = fixed.clone();
    check3["prevResult"] = r100.clone();
    cni("CHECK", "c3", &c3.path_str(), &check3, "").ok();
    c3.exec_ok(&["ip", "addr", "del", "10.123.0.78/24", "dev", "eth0"]);
    let (code, msg) = cni("CHECK", "c3", &c3.path_str(), &check3, "").err();
    assert_eq!(code, 104, "{msg}");
    assert!(msg.contains("10.123.0.78"), "{msg}");

    // A conflist that contradicts the network: 102, nothing attached.
    let c4 = Netns::new("cni4");
    let mut other = br("1.1.0");
    other["subnet"] = "10.124.0.0/24".into();
    let (code, msg) = cni("ADD", "c4", &c4.path_str(), &other, "").err();
    assert_eq!(code, 102, "{msg}");
    assert!(
        msg.contains("10.124.0.0/24") && msg.contains("10.123.0.0/24"),
        "{msg}"
    );
    assert!(eth0_missing(&c4));
    // The same container ID with other settings: 102 too.
    let mut moved = add.clone();
    moved["runtimeConfig"]["mac"] = "02:12:34:56:78:9b".into();
    let (code, msg) = cni("ADD", "c1", &c1.path_str(), &moved, "").err();
    assert_eq!(code, 102, "{msg}");
    // A MAC trellisd refuses: 100, naming the field.
    let mut bad_mac = br("1.1.0");
    bad_mac["runtimeConfig"] = json!({"mac": "01:00:5e:00:00:01"});
    let (code, msg) = cni("ADD", "c4", &c4.path_str(), &bad_mac, "").err();
    assert_eq!(code, 100, "{msg}");
    assert!(msg.contains("mac"), "{msg}");
    assert!(eth0_missing(&c4));

    // A second network (routed) holds c4; GC of the bridge network keeps
    // what is valid, removes the rest of its own, and leaves the routed
    // network alone.
    let routed = conf(
        "1.1.0",
        "cni-routed",
        &sock,
        json!({"mode": "routed", "subnets": ["10.125.0.0/24"]}),
    );
    let rr = cni("ADD", "c4", &c4.path_str(), &routed, "").ok();
    assert!(
        rr["ips"][0]["address"].as_str().unwrap().ends_with("/32"),
        "{rr}"
    );
    assert_eq!(rr["ips"][0]["gateway"], "169.254.1.1");
    let mut gc = br("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    assert_eq!(cni("GC", "", "", &gc, "").ok(), Value::Null);
    assert!(!eth0_missing(&c1), "GC removed a valid attachment");
    assert!(
        eth0_missing(&c2) && eth0_missing(&c3),
        "GC left invalid ones"
    );
    assert!(!eth0_missing(&c4), "GC of one network removed another's");
    // `cni.dev/attachments` (the drafts' name) is honoured too.
    let mut gc_old = routed.clone();
    gc_old["cni.dev/attachments"] = json!([{"containerID": "c4", "ifname": "eth0"}]);
    cni("GC", "", "", &gc_old, "").ok();
    assert!(!eth0_missing(&c4));

    // DEL: gone; DEL again and DEL of something never attached succeed,
    // with or without a netns.
    let mut del = add.clone();
    del["prevResult"] = r.clone();
    assert_eq!(cni("DEL", "c1", &c1.path_str(), &del, "").ok(), Value::Null);
    assert!(eth0_missing(&c1));
    cni("DEL", "c1", &c1.path_str(), &del, "").ok();
    cni("DEL", "never-added", "", &br("1.1.0"), "").ok();
    cni("DEL", "c4", &c4.path_str(), &routed, "").ok();
    // CHECK of something not attached: 3.
    let (code, msg) = cni("CHECK", "c1", &c1.path_str(), &br("1.1.0"), "").err();
    assert_eq!(code, 3, "{msg}");

    // Nothing left: no veth in the host namespace once trellisd's reaper
    // has deleted the retired ones (it batches them off the request path).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let links = host.exec_ok(&["ip", "-o", "link", "show", "type", "veth"]);
        if links.trim().is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "veths left: {links}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // trellisd stopped: STATUS 50, ADD 11.
    d.stop();
    let (code, _) = cni("STATUS", "", "", &br("1.1.0"), "").err();
    assert_eq!(code, 50);
    let (code, _) = cni("ADD", "c1", &c1.path_str(), &br("1.1.0"), "").err();
    assert_eq!(code, 11);
}

/// Whether the namespace has no `eth0`.
fn eth0_missing(ns: &Netns) -> bool {
    !ns.exec(&["ip", "link", "show", "eth0"]).status.success()
}
