//! Runs a `bgp` command: builds the request, calls trellisd's BGP service,
//! renders the answer. A gRPC status goes up as it came (the server's
//! message names the field it refused), so [`crate::exit`] maps it to an
//! exit code as it does the agent's.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};
use ipnet::IpNet;
use tonic::transport::Channel;
use tonic::{Code, Status};
use trellis_proto::v1::{self, BgpClient};

use super::cli::{BgpAdd, BgpCmd};
use super::render;
use super::view::{PeerView, RoutesView};
use crate::cli::Format;
use crate::exit::{self, usage};
use crate::render::{names, output};

type Client = BgpClient<Channel>;

/// Runs `cmd` against trellisd's BGP service `c`, writing its output in
/// format `f` to `out`; returns the exit code (0: a peer whose session is
/// down is no failure of the command).
pub async fn run(c: &mut Client, f: Format, cmd: BgpCmd, out: &mut dyn Write) -> Result<u8> {
    let text = command(c, f, cmd).await.map_err(unserved)?;
    out.write_all(text.as_bytes()).map_err(exit::output)?;
    Ok(0)
}

async fn command(c: &mut Client, f: Format, cmd: BgpCmd) -> Result<String> {
    match cmd {
        BgpCmd::Peers => output(f, peers(c).await?.as_slice(), render::peers),
        BgpCmd::Peer { address } => {
            let peer = peers(c)
                .await?
                .into_iter()
                .find(|p| p.address.parse::<IpAddr>().ok() == Some(address))
                // The server's NOT_FOUND, as if it had a call for one peer.
                .ok_or_else(|| Status::not_found(format!("no peer {address}")))?;
            output(f, &peer, render::peer)
        }
        BgpCmd::Routes { peer } => {
            let req = v1::ListBgpRoutesRequest {
                peer: peer.map(|a| a.to_string()).unwrap_or_default(),
            };
            let resp = c.list_routes(req).await?.into_inner();
            output(f, &sorted_routes(resp.into()), render::routes)
        }
        BgpCmd::Add(args) => {
            let p = c.add_peer(add_request(args)?).await?.into_inner();
            output(f, &PeerView::from(p), render::peer)
        }
        BgpCmd::Rm { addresses } => {
            let mut removed = Vec::new();
            for address in addresses {
                let address = address.to_string();
                let req = v1::RemoveBgpPeerRequest {
                    address: address.clone(),
                };
                c.remove_peer(req).await?;
                removed.push(address);
            }
            output(f, removed.as_slice(), names)
        }
    }
}

/// Every peer, by address (10.0.0.9 before 10.0.0.10, IPv4 before IPv6).
async fn peers(c: &mut Client) -> Result<Vec<PeerView>> {
    let list = c.list_peers(v1::ListBgpPeersRequest {}).await?.into_inner();
    let mut views: Vec<PeerView> = list.peers.into_iter().map(Into::into).collect();
    views.sort_by_cached_key(|p| (p.address.parse::<IpAddr>().ok(), p.address.clone()));
    Ok(views)
}

/// `r` with peers by address and prefixes by address, as `block ls` sorts
/// them (10.244.0.64/26 before 10.244.0.128/26).
pub fn sorted_routes(mut r: RoutesView) -> RoutesView {
    let by_prefix = |p: &String| (p.parse::<IpNet>().ok(), p.clone());
    r.exported.sort_by_cached_key(by_prefix);
    r.peers
        .sort_by_cached_key(|p| (p.peer.parse::<IpAddr>().ok(), p.peer.clone()));
    for p in &mut r.peers {
        p.routes
            .sort_by_cached_key(|route| by_prefix(&route.prefix));
    }
    r
}

/// The request of `bgp add`, with the MD5 key read from its file. Unset
/// flags are empty fields: trellisd's defaults.
pub fn add_request(a: BgpAdd) -> Result<v1::AddBgpPeerRequest> {
    let md5_password = match &a.md5_password_file {
        Some(path) => md5_key(path)?,
        None => String::new(),
    };
    let text = |ip: Option<String>| ip.unwrap_or_default();
    Ok(v1::AddBgpPeerRequest {
        peer: Some(v1::BgpPeerConfig {
            address: a.address.to_string(),
            remote_as: a.remote_as,
            port: a.port.map_or(0, u32::from),
            passive: a.passive,
            local_address: text(a.local_address.map(|ip| ip.to_string())),
            next_hop_v4: text(a.next_hop_v4.map(|ip| ip.to_string())),
            next_hop_v6: text(a.next_hop_v6.map(|ip| ip.to_string())),
            communities: a.communities.iter().map(ToString::to_string).collect(),
            hold_time: a.hold_time.map(u32::from),
            md5_password,
        }),
    })
}

/// The key in `path`, less one trailing newline (`echo key > file` writes
/// one). An empty key is a usage error: sent, it would mean no key at all,
/// and the session would run unsigned.
pub fn md5_key(path: &Path) -> Result<String> {
    let flag = format!("--md5-password-file {}", path.display());
    let text = std::fs::read_to_string(path).with_context(|| flag.clone())?;
    let key = match text.strip_suffix('\n') {
        Some(line) => line.strip_suffix('\r').unwrap_or(line),
        None => &text,
    };
    if key.is_empty() {
        return Err(usage(format!("{flag}: the file holds no key")));
    }
    Ok(key.to_owned())
}

/// A trellisd that does not serve `trellis.v1.Bgp` answers UNIMPLEMENTED
/// with no message (tonic's router for an unknown service); say why.
fn unserved(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<Status>() {
        Some(s) if s.code() == Code::Unimplemented && s.message().is_empty() => {
            Status::unimplemented(
                "trellisd does not serve trellis.v1.Bgp (is it older than netctl?)",
            )
            .into()
        }
        _ => e,
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
