//! Unit tests of the flag parsers.

use super::*;

fn one(protocol: Proto, host_port: u16, container_port: u16) -> PortSpec {
    PortSpec {
        protocol,
        host_ip: None,
        host_port,
        container_port,
    }
}

fn on(ip: &str, p: PortSpec) -> PortSpec {
    PortSpec {
        host_ip: Some(ip.parse().unwrap()),
        ..p
    }
}

#[test]
fn publish_accepts_dockers_forms() {
    let cases = [
        ("8081:80", vec![one(Proto::Tcp, 8081, 80)]),
        ("8081:80/tcp", vec![one(Proto::Tcp, 8081, 80)]),
        ("53:53/udp", vec![one(Proto::Udp, 53, 53)]),
        ("53:53/UDP", vec![one(Proto::Udp, 53, 53)]),
        (
            "127.0.0.1:8080:80",
            vec![on("127.0.0.1", one(Proto::Tcp, 8080, 80))],
        ),
        (
            "[::1]:8080-8081:80-81/udp",
            vec![
                on("::1", one(Proto::Udp, 8080, 80)),
                on("::1", one(Proto::Udp, 8081, 81)),
            ],
        ),
        (
            "[2001:db8::1]:443:8443",
            vec![on("2001:db8::1", one(Proto::Tcp, 443, 8443))],
        ),
        ("65535:1", vec![one(Proto::Tcp, 65535, 1)]),
        (
            "8000-8002:80-82/udp",
            vec![
                one(Proto::Udp, 8000, 80),
                one(Proto::Udp, 8001, 81),
                one(Proto::Udp, 8002, 82),
            ],
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(publish(spec), Ok(Publish(want)), "{spec}");
    }
}

#[test]
fn publish_refuses_bad_specs_naming_them() {
    let cases = [
        ("80", "a host port is required"),
        (
            "localhost:8080:80",
            "host address \"localhost\" is not an IPv4 address",
        ),
        (
            "::1:8080:80",
            "expected [IP:]HOST:CONTAINER[/PROTO] (IPv6 in brackets)",
        ),
        (
            "[::1:8080:80",
            "an IPv6 host address is written [ADDR]:HOST:CONTAINER",
        ),
        (
            "[nope]:8080:80",
            "host address \"nope\" is not an IP address",
        ),
        ("0:80", "host port \"0\" is out of range 1..=65535"),
        (
            "8080:70000",
            "container port \"70000\" is out of range 1..=65535",
        ),
        ("http:80", "host port \"http\" is not a number"),
        (":80", "host port is empty"),
        ("8080:", "container port is empty"),
        ("8080:80/sctp", "protocol \"sctp\" is not tcp or udp"),
        ("8080:80/", "protocol \"\" is not tcp or udp"),
        (
            "8002-8000:80-82",
            "host port range \"8002-8000\" ends before it starts",
        ),
        (
            "8000-8001:80",
            "host range has 2 ports but container range has 1",
        ),
        (
            "1:2:3:4",
            "expected [IP:]HOST:CONTAINER[/PROTO] (IPv6 in brackets)",
        ),
        ("", "a host port is required"),
    ];
    for (spec, want) in cases {
        let err = publish(spec).expect_err(spec);
        assert!(
            err.starts_with(&format!("publish spec {spec:?}: ")),
            "{err}"
        );
        assert!(err.contains(want), "{spec}: {err} lacks {want:?}");
    }
}

#[test]
fn labels_split_on_the_first_equals_sign() {
    assert_eq!(label("app=web"), Ok(("app".into(), "web".into())));
    assert_eq!(label("expr=a=b"), Ok(("expr".into(), "a=b".into())));
    assert_eq!(label("empty="), Ok(("empty".into(), String::new())));
    assert_eq!(
        label("novalue"),
        Err("label \"novalue\": expected KEY=VALUE".into())
    );
    assert_eq!(label("=v"), Err("label \"=v\": the key is empty".into()));
}

#[test]
fn labels_refuse_a_key_with_two_values() {
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let map = labels(&pairs(&[("b", "2"), ("a", "1"), ("a", "1")])).unwrap();
    assert_eq!(
        map.into_iter().collect::<Vec<_>>(),
        pairs(&[("a", "1"), ("b", "2")])
    );
    assert_eq!(
        labels(&pairs(&[("a", "1"), ("a", "2")])),
        Err("label \"a\" given twice (\"1\" and \"2\")".into())
    );
}

#[test]
fn keep_specs() {
    let k = |c: &str, i: &str| Keep {
        container_id: c.into(),
        ifname: i.into(),
    };
    assert_eq!(keep("c1"), Ok(k("c1", "")));
    assert_eq!(keep("c1/eth1"), Ok(k("c1", "eth1")));
    assert_eq!(keep("  c1/eth1 "), Ok(k("c1", "eth1")));
    for (bad, why) in [
        ("", "the container id is empty"),
        ("/eth0", "the container id is empty"),
        ("c1/", "the interface name is empty"),
        ("c1/a/b", "with one '/'"),
    ] {
        let err = keep(bad).expect_err(bad);
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[test]
fn keep_files_skip_comments_and_blank_lines_and_name_bad_lines() {
    let text = "# valid attachments\nc1\n\n  c2/eth1  \n# done\n";
    let got = keep_file(text).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].container_id, "c2");
    assert_eq!(got[1].ifname, "eth1");
    let err = keep_file("c1\nc2/\n").unwrap_err();
    assert_eq!(
        err,
        "line 2: keep spec \"c2/\": the interface name is empty"
    );
    assert_eq!(keep_file(""), Ok(vec![]));
}

#[test]
fn prefixes_have_no_host_bits() {
    assert_eq!(
        prefix("10.244.0.0/16"),
        Ok("10.244.0.0/16".parse().unwrap())
    );
    let v6 = prefix("fd00:10:244:0::/56").unwrap();
    assert_eq!(v6.to_string(), "fd00:10:244::/56");
    assert_eq!(
        prefix("10.244.1.0/16"),
        Err("prefix \"10.244.1.0/16\" has host bits set (the prefix is 10.244.0.0/16)".into())
    );
    for bad in ["10.244.0.0", "10.244.0.0/33", "pods", "", "fd00::/129"] {
        assert_eq!(
            prefix(bad),
            Err(format!("prefix {bad:?} is not ADDRESS/LENGTH")),
            "{bad}"
        );
    }
}

#[test]
fn block_sizes_take_an_optional_slash() {
    assert_eq!(block_size("26"), Ok(26));
    assert_eq!(block_size("/122"), Ok(122));
    assert_eq!(block_size("128"), Ok(128));
    for bad in ["0", "129", "/", "", "x", "-1", "//26"] {
        assert_eq!(
            block_size(bad),
            Err(format!("block size {bad:?} is not a prefix length 1..=128")),
            "{bad}"
        );
    }
}

#[test]
fn communities_are_two_16_bit_halves() {
    let c = |asn, value| Ok(Community { asn, value });
    assert_eq!(community("65000:100"), c(65000, 100));
    assert_eq!(community("0:0"), c(0, 0));
    assert_eq!(community("65535:65535"), c(65535, 65535));
    assert_eq!(community("065000:0100").unwrap().to_string(), "65000:100");
    assert_eq!(
        community("65000"),
        Err("community \"65000\": expected ASN:VALUE, e.g. 65000:100".into())
    );
    assert_eq!(
        community("65000:70000"),
        Err("community \"65000:70000\": \"70000\" is not a number 0..=65535".into())
    );
    for bad in ["", ":", "a:1", "1:", "1:2:3", "-1:5", "no-export"] {
        assert!(community(bad).is_err(), "{bad}");
    }
}

#[test]
fn hold_times_are_0_or_at_least_3_seconds() {
    for (spec, want) in [("0", 0), ("3", 3), ("90", 90), ("65535", 65535)] {
        assert_eq!(hold_time(spec), Ok(want), "{spec}");
    }
    assert_eq!(
        hold_time("2"),
        Err("hold time \"2\": must be 0 or at least 3 seconds (RFC 4271)".into())
    );
    assert!(hold_time("1").is_err());
    for bad in ["65536", "-1", "", "90s"] {
        assert_eq!(
            hold_time(bad),
            Err(format!(
                "hold time {bad:?} is not a number of seconds 0..=65535"
            )),
            "{bad}"
        );
    }
}
