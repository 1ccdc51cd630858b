//! The CNI environment: the verb and the container it is about, as a
//! runtime passes them (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME`, `CNI_ARGS`). Read once, checked by name, so that a verb
//! never starts with a value it cannot use.

use crate::spec::{CniError, code};

/// The verbs of the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach it.
    Del,
    /// Check its networking is as it was made.
    Check,
    /// Remove every attachment not in the list (1.1).
    Gc,
    /// Is the plugin ready for ADD (1.1).
    Status,
    /// The versions supported.
    Version,
}

/// What the environment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// The verb.
    pub command: Command,
    /// `CNI_CONTAINERID` (ADD, DEL, CHECK).
    pub container_id: String,
    /// `CNI_NETNS` (ADD, CHECK; DEL may lack it).
    pub netns: String,
    /// `CNI_IFNAME` (ADD, DEL, CHECK).
    pub ifname: String,
    /// `CNI_ARGS`, parsed.
    pub args: CniArgs,
}

/// The `CNI_ARGS` keys this plugin honours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `IP=`: addresses asked for, comma-separated.
    pub ips: Vec<String>,
    /// `MAC=`: the container interface's MAC.
    pub mac: Option<String>,
}

/// Reads the environment through `get` (`std::env::var` in the binary).
pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
    let invalid = |name: &str, why: String| {
        CniError::new(code::INVALID_ENVIRONMENT, format!("{name}: {why}"))
    };
    let command = match get("CNI_COMMAND").as_deref() {
        Some("ADD") => Command::Add,
        Some("DEL") => Command::Del,
        Some("CHECK") => Command::Check,
        Some("GC") => Command::Gc,
        Some("STATUS") => Command::Status,
        Some("VERSION") => Command::Version,
        Some(other) => {
            return Err(invalid(
                "CNI_COMMAND",
                format!("{other:?} is not a CNI verb (ADD, DEL, CHECK, GC, STATUS, VERSION)"),
            ));
        }
        None => return Err(invalid("CNI_COMMAND", "not set".into())),
    };
    let about_a_container = matches!(command, Command::Add | Command::Del | Command::Check);
    let need = |name: &str| -> Result<String, CniError> {
        match get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ if !about_a_container => Ok(String::new()),
            _ => Err(invalid(name, "not set".into())),
        }
    };
    let container_id = need("CNI_CONTAINERID")?;
    let ifname = need("CNI_IFNAME")?;
    // DEL may come after the namespace is gone, without one.
    let netns = match command {
        Command::Del => get("CNI_NETNS").unwrap_or_default(),
        _ => need("CNI_NETNS")?,
    };
    let args = parse_args(&get("CNI_ARGS").unwrap_or_default())?;
    Ok(Env {
        command,
        container_id,
        netns,
        ifname,
        args,
    })
}

/// Parses `CNI_ARGS` (`K=V;K=V`): `IP` and `MAC` are taken; a key the
/// plugin does not know is an error unless `IgnoreUnknown` is true, as the
/// reference plugins do (Kubernetes' `K8S_POD_*` come with it).
pub fn parse_args(s: &str) -> Result<CniArgs, CniError> {
    let bad = |why: String| CniError::new(code::INVALID_ENVIRONMENT, format!("CNI_ARGS: {why}"));
    let mut out = CniArgs::default();
    let mut unknown = Vec::new();
    let mut ignore_unknown = false;
    for pair in s.split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(bad(format!("{pair:?} is not KEY=VALUE")));
        };
        match k {
            "IgnoreUnknown" => {
                ignore_unknown = match v.to_ascii_lowercase().as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(bad(format!("IgnoreUnknown={v:?} is not a boolean"))),
                }
            }
            "IP" => out.ips = v.split(',').map(|s| s.trim().to_owned()).collect(),
            "MAC" => out.mac = Some(v.to_owned()),
            _ => unknown.push(k.to_owned()),
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        return Err(bad(format!(
            "unknown key {:?} (IgnoreUnknown=1 lets it pass)",
            unknown[0]
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        read(|k| m.get(k).cloned())
    }

    #[test]
    fn add_needs_the_container_its_netns_and_ifname() {
        let ok = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(ok.command, Command::Add);
        for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let mut pairs = vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", "/run/netns/c1"),
                ("CNI_IFNAME", "eth0"),
            ];
            pairs.retain(|(k, _)| *k != missing);
            let e = env(&pairs).unwrap_err();
            assert_eq!(e.code, code::INVALID_ENVIRONMENT);
            assert!(e.msg.contains(missing), "{e}");
        }
    }

    #[test]
    fn del_goes_without_a_netns_and_version_without_anything() {
        let del = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(del.netns, "");
        assert_eq!(
            env(&[("CNI_COMMAND", "VERSION")]).unwrap().command,
            Command::Version
        );
        assert_eq!(env(&[("CNI_COMMAND", "GC")]).unwrap().command, Command::Gc);
    }

    #[test]
    fn an_unknown_or_missing_verb_is_named() {
        let e = env(&[("CNI_COMMAND", "FROB")]).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENVIRONMENT);
        assert!(
            e.msg.contains("CNI_COMMAND") && e.msg.contains("FROB"),
            "{e}"
        );
        assert!(env(&[]).unwrap_err().msg.contains("CNI_COMMAND: not set"));
    }

    #[test]
    fn cni_args_give_ip_and_mac_and_refuse_unknown_keys_unless_told() {
        let a =
            parse_args("IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.0.0.5,fd00::5;MAC=02:00:00:00:00:01")
                .unwrap();
        assert_eq!(a.ips, vec!["10.0.0.5", "fd00::5"]);
        assert_eq!(a.mac.as_deref(), Some("02:00:00:00:00:01"));
        let e = parse_args("K8S_POD_NAME=x").unwrap_err();
        assert!(e.msg.contains("K8S_POD_NAME"), "{e}");
        assert!(parse_args("IP").unwrap_err().msg.contains("KEY=VALUE"));
        assert!(parse_args("IgnoreUnknown=maybe").is_err());
        assert_eq!(parse_args("").unwrap(), CniArgs::default());
    }
}
