//! Runs a parsed command: builds the request, calls trellisd (or hands a
//! BGP command to [`crate::bgp`], a controller command to
//! [`crate::cluster`]), renders the answer. Each function returns the text
//! to print and the exit code (0, or [`exit::PROBLEMS`] when the answer
//! itself reports a problem).

use std::io::Write;

use anyhow::{Context, Result};
use tonic::transport::Channel;
use trellis_proto::v1::{self, AgentClient};

use crate::cli::{
    Attach, Cli, Command, EndpointCmd, EndpointFilter, EndpointRef, Format, GcArgs, Mode,
    NetworkCmd, NetworkCreate,
};
use crate::exit::{self, usage};
use crate::view::{AttachmentView, CheckView, EndpointView, GcView, NetworkView, StatusView};
use crate::{parse, render};

type Client = AgentClient<Channel>;

/// Runs `cli`, writing its output to `out`; returns the exit code.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<u8> {
    let f = cli.output;
    let command = match cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "netctl", out);
            return Ok(0);
        }
        Command::Bgp(cmd) => {
            let mut client = crate::conn::bgp(&cli.conn).await?;
            return crate::bgp::run(&mut client, f, cmd, out).await;
        }
        Command::Controller(cmd) => {
            let mut client = crate::conn::controller(&cli.conn).await?;
            return crate::cluster::run(&mut client, f, cmd, out).await;
        }
        command => command,
    };
    let mut client = crate::conn::agent(&cli.conn).await?;
    let (text, code) = match command {
        Command::Network(cmd) => (network(&mut client, f, cmd).await?, 0),
        Command::Endpoint(cmd) => (endpoint(&mut client, f, cmd).await?, 0),
        Command::Check(r) => check(&mut client, f, r).await?,
        Command::Gc(args) => gc(&mut client, f, args).await?,
        Command::Status => status(&mut client, f).await?,
        Command::Watch { replay } => return watch(&mut client, f, replay, out).await,
        Command::Completions { .. } | Command::Bgp(_) | Command::Controller(_) => {
            unreachable!("handled above")
        }
    };
    out.write_all(text.as_bytes()).map_err(exit::output)?;
    Ok(code)
}

async fn network(c: &mut Client, f: Format, cmd: NetworkCmd) -> Result<String> {
    match cmd {
        NetworkCmd::Create(args) => {
            let n = c.create_network(create_request(args)).await?.into_inner();
            render::output(f, &NetworkView::from(n), render::network)
        }
        NetworkCmd::Ls => {
            let list = c.list_networks(v1::ListNetworksRequest {}).await?;
            let mut views: Vec<NetworkView> = list
                .into_inner()
                .networks
                .into_iter()
                .map(Into::into)
                .collect();
            views.sort_by(|a, b| a.name.cmp(&b.name));
            render::output(f, views.as_slice(), render::networks)
        }
        NetworkCmd::Inspect { names } => {
            let mut views = Vec::new();
            for name in names {
                let n = c.get_network(v1::GetNetworkRequest { name }).await?;
                views.push(NetworkView::from(n.into_inner()));
            }
            render::output(f, views.as_slice(), |v| {
                let blocks: Vec<String> = v.iter().map(render::network).collect();
                blocks.join("\n")
            })
        }
        NetworkCmd::Rm { names } => {
            for name in &names {
                let name = name.clone();
                c.delete_network(v1::DeleteNetworkRequest { name }).await?;
            }
            render::output(f, names.as_slice(), render::names)
        }
    }
}

/// The request of `network create`.
pub fn create_request(a: NetworkCreate) -> v1::CreateNetworkRequest {
    let mode = match a.mode {
        Mode::Bridge => v1::NetworkMode::Bridge,
        Mode::Routed => v1::NetworkMode::Routed,
    };
    let outgoing_nat = a.nat();
    v1::CreateNetworkRequest {
        spec: Some(v1::NetworkSpec {
            name: a.name,
            mode: mode as i32,
            subnets: a.subnets,
            gateway: a.gateway.unwrap_or_default(),
            bridge: a.bridge.unwrap_or_default(),
            outgoing_nat,
            mtu: a.mtu.unwrap_or(0),
            internal: a.internal,
            routable: a.routable,
            reach: a.reach,
            subnet_pool: a.subnet_pool.unwrap_or_default(),
            cluster_pools: Vec::new(),
        }),
    }
}

async fn endpoint(c: &mut Client, f: Format, cmd: EndpointCmd) -> Result<String> {
    match cmd {
        EndpointCmd::Attach(args) => {
            let e = c.attach(attach_request(args)?).await?.into_inner();
            render::output(f, &EndpointView::from(e), render::endpoint)
        }
        EndpointCmd::Detach(r) => {
            let req = v1::DetachRequest {
                container_id: r.container.clone(),
                ifname: r.ifname.clone(),
            };
            c.detach(req).await?;
            let view = AttachmentView {
                container_id: r.container,
                ifname: r.ifname,
            };
            render::output(f, &view, |a| match a.ifname.as_str() {
                "" => format!("{}\n", a.container_id),
                i => format!("{}/{i}\n", a.container_id),
            })
        }
        EndpointCmd::Ls(filter) => {
            let list = c.list_endpoints(list_request(filter)?).await?.into_inner();
            endpoint_list(f, list)
        }
        EndpointCmd::Inspect(r) => {
            let req = v1::GetEndpointRequest {
                container_id: r.container,
                ifname: r.ifname,
            };
            let e = c.get_endpoint(req).await?.into_inner();
            render::output(f, &EndpointView::from(e), render::endpoint)
        }
    }
}

/// The request of `endpoint attach`; a label given twice is a usage error.
pub fn attach_request(a: Attach) -> Result<v1::AttachRequest> {
    let labels = parse::labels(&a.labels).map_err(usage)?;
    let ports = a
        .publish
        .iter()
        .flat_map(|p| &p.0)
        .map(|p| v1::PortMapping {
            protocol: match p.protocol {
                parse::Proto::Tcp => v1::Protocol::Tcp,
                parse::Proto::Udp => v1::Protocol::Udp,
            } as i32,
            host_port: p.host_port.into(),
            container_port: p.container_port.into(),
            container_ip: String::new(),
            host_ip: p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        })
        .collect();
    Ok(v1::AttachRequest {
        network: a.network,
        container_id: a.container,
        netns: a.netns,
        ifname: a.ifname,
        ports,
        fixed_addresses: a.ips,
        labels: labels.into_iter().collect(),
        mac: String::new(),
    })
}

/// `endpoint ls` (and `node endpoints`, through the controller): sorted by
/// container and interface.
pub fn endpoint_list(f: Format, list: v1::ListEndpointsResponse) -> Result<String> {
    let mut views: Vec<EndpointView> = list.endpoints.into_iter().map(Into::into).collect();
    views.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
    render::output(f, views.as_slice(), render::endpoints)
}

/// The request of `endpoint ls` (and `node endpoints`); a label given twice
/// is a usage error.
pub fn list_request(filter: EndpointFilter) -> Result<v1::ListEndpointsRequest> {
    let labels = parse::labels(&filter.labels).map_err(usage)?;
    Ok(v1::ListEndpointsRequest {
        network: filter.network.unwrap_or_default(),
        container_id: filter.container.unwrap_or_default(),
        labels: labels.into_iter().collect(),
    })
}

async fn check(c: &mut Client, f: Format, r: EndpointRef) -> Result<(String, u8)> {
    let req = v1::CheckRequest {
        container_id: r.container.clone(),
        ifname: r.ifname.clone(),
    };
    let resp = c.check(req).await?.into_inner();
    let view = CheckView {
        container_id: r.container,
        ifname: r.ifname,
        ok: resp.ok,
        problems: resp.problems,
    };
    let code = if view.ok { 0 } else { exit::PROBLEMS };
    Ok((render::output(f, &view, render::check)?, code))
}

/// The attachments `gc` keeps: `--keep` flags, then the lines of `--keep-file`.
pub fn keep_list(args: &GcArgs) -> Result<Vec<v1::Attachment>> {
    let mut keep = args.keep.clone();
    if let Some(path) = &args.keep_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--keep-file {}", path.display()))?;
        let more = parse::keep_file(&text)
            .map_err(|e| usage(format!("--keep-file {}: {e}", path.display())))?;
        keep.extend(more);
    }
    Ok(keep
        .into_iter()
        .map(|k| v1::Attachment {
            container_id: k.container_id,
            ifname: k.ifname,
        })
        .collect())
}

async fn gc(c: &mut Client, f: Format, args: GcArgs) -> Result<(String, u8)> {
    let valid = keep_list(&args)?;
    let network = args.network.unwrap_or_default();
    let resp = c
        .garbage_collect(v1::GarbageCollectRequest { valid, network })
        .await?;
    let view = GcView::from(resp.into_inner());
    let code = if view.errors.is_empty() {
        0
    } else {
        exit::PROBLEMS
    };
    Ok((render::output(f, &view, render::gc)?, code))
}

async fn status(c: &mut Client, f: Format) -> Result<(String, u8)> {
    let view = StatusView::from(c.status(v1::StatusRequest {}).await?.into_inner());
    let code = if view.ready { 0 } else { exit::PROBLEMS };
    Ok((render::output(f, &view, render::status)?, code))
}

async fn watch(c: &mut Client, f: Format, replay: bool, out: &mut dyn Write) -> Result<u8> {
    let mut stream = c.watch(v1::WatchRequest { replay }).await?.into_inner();
    while let Some(event) = stream.message().await? {
        let text = render::streamed(f, &event.into())?;
        out.write_all(text.as_bytes()).map_err(exit::output)?;
        out.flush().map_err(exit::output)?;
    }
    Ok(0)
}
