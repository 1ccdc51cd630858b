use super::*;

fn sample() -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: "veth1".into(),
                mac: None,
                sandbox: None,
                mtu: Some(1400),
            },
            Interface {
                name: "eth0".into(),
                mac: Some("02:42:0a:58:00:02".into()),
                sandbox: Some("/run/netns/c1".into()),
                mtu: Some(1400),
            },
        ],
        ips: vec![
            IpConfig {
                address: "10.88.0.2/16".parse().unwrap(),
                gateway: Some("10.88.0.1".parse().unwrap()),
                interface: 1,
            },
            IpConfig {
                address: "fd00::2/64".parse().unwrap(),
                gateway: None,
                interface: 1,
            },
        ],
        routes: vec![RouteConfig {
            dst: "0.0.0.0/0".parse().unwrap(),
            gw: Some("10.88.0.1".parse().unwrap()),
        }],
        dns: Some(serde_json::json!({"nameservers": ["10.88.0.1"]})),
    }
}

#[test]
fn a_result_is_written_in_the_version_asked_for() {
    let r = sample();
    let v040 = r.to_json("0.4.0");
    assert_eq!(v040["cniVersion"], "0.4.0");
    assert_eq!(v040["ips"][0]["version"], "4");
    assert_eq!(v040["ips"][1]["version"], "6");
    assert!(v040["interfaces"][1].get("mtu").is_none());
    let v100 = r.to_json("1.0.0");
    assert!(v100["ips"][0].get("version").is_none());
    assert!(v100["interfaces"][0].get("mtu").is_none());
    let v110 = r.to_json("1.1.0");
    assert_eq!(v110["interfaces"][1]["mtu"], 1400);
    assert_eq!(v110["interfaces"][1]["sandbox"], "/run/netns/c1");
    assert!(v110["interfaces"][0].get("sandbox").is_none());
    assert_eq!(v110["ips"][0]["address"], "10.88.0.2/16");
    assert_eq!(v110["ips"][0]["gateway"], "10.88.0.1");
    assert_eq!(v110["ips"][0]["interface"], 1);
    assert!(v110["ips"][1].get("gateway").is_none());
    assert_eq!(v110["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(v110["routes"][0]["gw"], "10.88.0.1");
    assert_eq!(v110["dns"]["nameservers"][0], "10.88.0.1");
}

#[test]
fn errors_carry_code_msg_and_details_only_when_there_are_some() {
    let e = CniError::new(code::TRY_AGAIN, "trellisd is not reachable");
    let j = e.to_json("1.0.0");
    assert_eq!(j["code"], 11);
    assert_eq!(j["cniVersion"], "1.0.0");
    assert!(j.get("details").is_none());
    let j = e.with_details("connection refused").to_json("1.1.0");
    assert_eq!(j["details"], "connection refused");
}

#[test]
fn versions_outside_the_three_are_refused_with_code_1() {
    for v in SUPPORTED {
        check_version(v).unwrap();
    }
    for v in ["0.3.1", "2.0.0", "", "1.1"] {
        let e = check_version(v).unwrap_err();
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION, "{v}");
        assert!(e.msg.contains(&format!("{v:?}")), "{e}");
    }
    let info = version_info(Some("1.0.0"));
    assert_eq!(info["cniVersion"], "1.0.0");
    assert_eq!(info["supportedVersions"], serde_json::json!(SUPPORTED));
    assert_eq!(version_info(Some("9.9.9"))["cniVersion"], LATEST);
}

#[test]
fn a_conflist_entry_reads_with_capabilities_and_gc_lists() {
    let conf: NetConf = serde_json::from_value(serde_json::json!({
        "cniVersion": "1.1.0",
        "name": "trellis-br",
        "type": "trellis-cni",
        "mode": "bridge",
        "subnet": "10.88.0.0/16",
        "unknownKey": {"left": "alone"},
        "runtimeConfig": {
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}],
            "ips": ["10.88.0.9/16"],
            "mac": "02:00:00:00:00:09"
        },
        "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]
    }))
    .unwrap();
    assert_eq!(conf.name, "trellis-br");
    assert_eq!(conf.runtime_config.port_mappings[0].host_port, 8080);
    assert_eq!(
        conf.runtime_config.port_mappings[0].host_ip.as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(conf.runtime_config.ips, vec!["10.88.0.9/16"]);
    assert_eq!(
        conf.valid_attachments.unwrap(),
        vec![Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into()
        }]
    );
}
