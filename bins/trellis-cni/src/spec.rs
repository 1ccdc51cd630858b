//! The CNI protocol's own values: versions, the network configuration a
//! runtime writes on stdin, the result and error documents it reads back on
//! stdout, and the error codes of the specification (1.1.0, "Error codes").
//!
//! Only what trellis uses is typed; every other key of the configuration is
//! left alone (other plugins of a conflist, runtime extras), as the
//! specification asks.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The configuration versions this plugin accepts, oldest first; a result
/// is written in the version its configuration asked for.
pub const SUPPORTED: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// The newest version, answered to `VERSION` when none was asked.
pub const LATEST: &str = "1.1.0";

/// The specification's error codes, and the plugin's own (≥ 100).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration (the message names
    /// the key and the value).
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// The container is unknown or does not exist (its netns).
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables (`CNI_COMMAND`, …).
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// I/O failure (stdin unreadable).
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content (stdin not JSON of the right shape).
    pub const DECODE: u32 = 6;
    /// Invalid network configuration (a value trellis cannot use).
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later: trellisd is out of reach or busy.
    pub const TRY_AGAIN: u32 = 11;
    /// STATUS: the plugin is not available (trellisd down or not ready).
    pub const NOT_AVAILABLE: u32 = 50;
    /// trellisd refused the request as invalid (its gRPC status
    /// INVALID_ARGUMENT; the message names the field).
    pub const REFUSED: u32 = 100;
    /// No address left: the network's subnet, or its cluster pool, is full.
    pub const EXHAUSTED: u32 = 101;
    /// The conflist contradicts the trellis network of that name, or the
    /// container's interface is attached with other settings.
    pub const CONFLICT: u32 = 102;
    /// trellisd cannot do it in the state things are in (a host port taken,
    /// the node fenced from its cluster).
    pub const PRECONDITION: u32 = 103;
    /// CHECK found the container's networking not as it was made.
    pub const CHECK_FAILED: u32 = 104;
    /// trellisd failed (an internal error, a kernel call that failed).
    pub const INTERNAL: u32 = 110;
}

/// A failure, as the runtime reads it from stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// One of [`code`].
    pub code: u32,
    /// A short message.
    pub msg: String,
    /// Everything else worth knowing (trellisd's own message).
    pub details: String,
}

impl CniError {
    /// An error with `code` and message `msg`, no details.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same, with `details`.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error document in `version`.
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = serde_json::json!({
            "cniVersion": version,
            "code": self.code,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

/// The network configuration, as this plugin reads it: the conflist's
/// name and version injected by the runtime, the plugin's own keys, the
/// runtime's capabilities and the previous result.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// The version of this configuration (and of the result wanted).
    pub cni_version: String,
    /// The conflist's network name.
    #[serde(default)]
    pub name: String,
    /// trellisd's unix socket; default the daemon's.
    #[serde(default)]
    pub socket: Option<String>,
    /// The trellis network; default `name`.
    #[serde(default)]
    pub network: Option<String>,
    /// `bridge` (default) or `routed`.
    #[serde(default)]
    pub mode: Option<String>,
    /// One subnet (bridge), or the pools (routed).
    #[serde(default)]
    pub subnet: Option<String>,
    /// Subnets: at most one per family.
    #[serde(default)]
    pub subnets: Option<Vec<String>>,
    /// Bridge: the gateway address; default the subnet's first host.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Bridge: the bridge's interface name.
    #[serde(default)]
    pub bridge: Option<String>,
    /// Masquerade traffic leaving the host (default: on, unless internal
    /// or routable).
    #[serde(default)]
    pub masquerade: Option<bool>,
    /// The MTU (0 or absent: the kernel's default).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Bridge: nothing forwarded in or out (Docker's `--internal`).
    #[serde(default)]
    pub internal: Option<bool>,
    /// Bridge: reached by the containers' own addresses (never
    /// masqueraded, announced by BGP).
    #[serde(default)]
    pub routable: Option<bool>,
    /// Bridge, on a cluster node: take the subnet from this controller pool.
    #[serde(default)]
    pub subnet_pool: Option<String>,
    /// DNS settings, handed back in the result as they are.
    #[serde(default)]
    pub dns: Option<Value>,
    /// The runtime's capabilities (`portMappings`, `ips`, `mac`).
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    /// `args.cni.ips` (the conventions' other way to ask for addresses).
    #[serde(default)]
    pub args: Option<Value>,
    /// The result of the previous ADD (CHECK, DEL).
    #[serde(default)]
    pub prev_result: Option<Value>,
    /// GC: the attachments that are still valid (spec 1.1).
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
    /// GC: the same, under the name of the spec's drafts.
    #[serde(rename = "cni.dev/attachments", default)]
    pub attachments: Option<Vec<Attachment>>,
}

/// The runtime's capability arguments.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// Ports to publish.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// Addresses asked for (with or without a prefix length).
    #[serde(default)]
    pub ips: Vec<String>,
    /// The container interface's MAC.
    #[serde(default)]
    pub mac: Option<String>,
}

/// One `portMappings` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// The port on the host.
    pub host_port: u32,
    /// The port in the container.
    pub container_port: u32,
    /// `tcp` (default), `udp` or `sctp`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// The host address to publish on; empty: all.
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

/// One attachment in GC's list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    /// `CNI_CONTAINERID` of its ADD.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME` of its ADD.
    pub ifname: String,
}

/// The result of ADD, version-neutral; [`CniResult::to_json`] writes it in
/// the version asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CniResult {
    /// The host end and the container end of the veth.
    pub interfaces: Vec<Interface>,
    /// The container's addresses.
    pub ips: Vec<IpConfig>,
    /// The routes installed in the container.
    pub routes: Vec<RouteConfig>,
    /// DNS, from the configuration.
    pub dns: Option<Value>,
}

/// An interface of the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC, if known.
    pub mac: Option<String>,
    /// The netns it is in; `None` for the host's.
    pub sandbox: Option<String>,
    /// 1.1.0: its MTU, when the network sets one.
    pub mtu: Option<u32>,
}

/// An address of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// With prefix length.
    pub address: ipnet::IpNet,
    /// The container's gateway of that family.
    pub gateway: Option<std::net::IpAddr>,
    /// Index into `interfaces`.
    pub interface: usize,
}

/// A route of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// The destination.
    pub dst: ipnet::IpNet,
    /// The next hop; `None` on-link.
    pub gw: Option<std::net::IpAddr>,
}

impl CniResult {
    /// The result document in `version` (one of [`SUPPORTED`]).
    pub fn to_json(&self, version: &str) -> Value {
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut m = BTreeMap::new();
                m.insert("name", Value::String(i.name.clone()));
                if let Some(mac) = &i.mac {
                    m.insert("mac", Value::String(mac.clone()));
                }
                if let Some(s) = &i.sandbox {
                    m.insert("sandbox", Value::String(s.clone()));
                }
                if version == "1.1.0"
                    && let Some(mtu) = i.mtu
                {
                    m.insert("mtu", Value::from(mtu));
                }
                serde_json::to_value(m).expect("a map of strings")
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut m = serde_json::Map::new();
                if version == "0.4.0" {
                    let v = if ip.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    };
                    m.insert("version".into(), Value::String(v.into()));
                }
                m.insert("address".into(), Value::String(ip.address.to_string()));
                if let Some(gw) = ip.gateway {
                    m.insert("gateway".into(), Value::String(gw.to_string()));
                }
                m.insert("interface".into(), Value::from(ip.interface));
                Value::Object(m)
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut m = serde_json::Map::new();
                m.insert("dst".into(), Value::String(r.dst.to_string()));
                if let Some(gw) = r.gw {
                    m.insert("gw".into(), Value::String(gw.to_string()));
                }
                Value::Object(m)
            })
            .collect();
        let mut out = serde_json::json!({
            "cniVersion": version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": routes,
        });
        if let Some(dns) = &self.dns {
            out["dns"] = dns.clone();
        }
        out
    }
}

/// Checks that `v` is a version this plugin speaks.
pub fn check_version(v: &str) -> Result<(), CniError> {
    if SUPPORTED.contains(&v) {
        return Ok(());
    }
    Err(CniError::new(
        code::INCOMPATIBLE_VERSION,
        format!("cniVersion {v:?} is not supported"),
    )
    .with_details(format!("trellis-cni speaks {}", SUPPORTED.join(", "))))
}

/// The answer to VERSION: the version asked for (or the latest) and every
/// version supported.
pub fn version_info(asked: Option<&str>) -> Value {
    let v = asked.filter(|v| SUPPORTED.contains(v)).unwrap_or(LATEST);
    serde_json::json!({ "cniVersion": v, "supportedVersions": SUPPORTED })
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
