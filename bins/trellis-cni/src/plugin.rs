//! The verbs, over trellisd's Agent API: each one call or two, so that the
//! plugin stays a thin translation and trellisd keeps every promise
//! (idempotent attach, nothing half-made, no leak) in one place.
//!
//! - ADD: the trellis network named by the conflist exists or is created
//!   from the conflist's own fields (and must agree with them), then one
//!   Attach; a second ADD of the same container answers the same result.
//! - DEL: Detach; something unknown is done.
//! - CHECK: the endpoint exists, trellisd's Check finds the kernel as
//!   recorded, and the previous result's addresses are the endpoint's.
//! - GC: GarbageCollect scoped to the network, keeping the valid
//!   attachments.
//! - STATUS: trellisd's Status is ready.

use crate::convert;
use crate::env::Env;
use crate::spec::{CniError, CniResult, NetConf, code};
use tonic::transport::Channel;
use trellis_proto::v1 as pb;
use trellis_proto::v1::AgentClient;

/// How long one call to trellisd may take before the runtime is told to
/// try again (an attach under heavy load takes milliseconds; this is for a
/// daemon that accepted the connection and hangs).
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// ADD: the result of attaching the container by `req` (built from the
/// configuration and the environment: [`convert::attach_request`]).
pub async fn add(
    api: &mut AgentClient<Channel>,
    conf: &NetConf,
    req: pb::AttachRequest,
) -> Result<CniResult, CniError> {
    let network = ensure_network(api, conf).await?;
    let ep = api
        .attach(req)
        .await
        .map_err(|s| convert::status_error("attach", &s))?
        .into_inner();
    convert::result(conf, &network, &ep)
}

/// The trellis network the conflist names: read, or created from the
/// conflist when it does not exist; a conflist that contradicts it is
/// [`code::CONFLICT`].
async fn ensure_network(
    api: &mut AgentClient<Channel>,
    conf: &NetConf,
) -> Result<pb::Network, CniError> {
    let name = convert::network_name(conf)?;
    let existing = match api
        .get_network(pb::GetNetworkRequest { name: name.clone() })
        .await
    {
        Ok(n) => Some(n.into_inner()),
        Err(s) if s.code() == tonic::Code::NotFound => None,
        Err(s) => return Err(convert::status_error("read the network", &s)),
    };
    let network = match existing {
        Some(n) => n,
        None => {
            let spec = convert::network_spec(conf)?;
            match api
                .create_network(pb::CreateNetworkRequest { spec: Some(spec) })
                .await
            {
                Ok(n) => n.into_inner(),
                // Another ADD created it first: use that one (if it agrees).
                Err(s) if s.code() == tonic::Code::AlreadyExists => api
                    .get_network(pb::GetNetworkRequest { name })
                    .await
                    .map_err(|s| convert::status_error("read the network", &s))?
                    .into_inner(),
                Err(s) => return Err(convert::status_error("create the network", &s)),
            }
        }
    };
    convert::agrees(conf, &network)?;
    Ok(network)
}

/// DEL: the container's interface detached; unknown is done.
pub async fn del(api: &mut AgentClient<Channel>, env: &Env) -> Result<(), CniError> {
    match api
        .detach(pb::DetachRequest {
            container_id: env.container_id.clone(),
            ifname: env.ifname.clone(),
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
        // An ID or name trellis would never have attached: nothing to do.
        Err(s) if s.code() == tonic::Code::InvalidArgument => Ok(()),
        Err(s) => Err(convert::status_error("detach", &s)),
    }
}

/// CHECK: the container's networking is as ADD made it.
pub async fn check(
    api: &mut AgentClient<Channel>,
    conf: &NetConf,
    env: &Env,
) -> Result<(), CniError> {
    let name = convert::network_name(conf)?;
    let network = api
        .get_network(pb::GetNetworkRequest { name })
        .await
        .map_err(|s| convert::status_error("read the network", &s))?
        .into_inner();
    convert::agrees(conf, &network)?;
    let ep = api
        .get_endpoint(pb::GetEndpointRequest {
            container_id: env.container_id.clone(),
            ifname: env.ifname.clone(),
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::NotFound => CniError::new(
                code::UNKNOWN_CONTAINER,
                format!(
                    "container {:?} has no interface {:?} on trellis",
                    env.container_id, env.ifname
                ),
            ),
            _ => convert::status_error("read the endpoint", &s),
        })?
        .into_inner();
    if ep.network != network.spec.as_ref().map_or("", |s| s.name.as_str()) {
        return Err(CniError::new(
            code::CHECK_FAILED,
            format!(
                "container {:?} interface {:?} is on network {:?}, not this one",
                env.container_id, env.ifname, ep.network
            ),
        ));
    }
    if ep.netns != env.netns {
        return Err(CniError::new(
            code::CHECK_FAILED,
            format!(
                "the endpoint is in netns {:?}, not CNI_NETNS {:?}",
                ep.netns, env.netns
            ),
        ));
    }
    let report = api
        .check(pb::CheckRequest {
            container_id: env.container_id.clone(),
            ifname: env.ifname.clone(),
        })
        .await
        .map_err(|s| convert::status_error("check", &s))?
        .into_inner();
    if !report.ok {
        return Err(CniError::new(
            code::CHECK_FAILED,
            "the container's networking is not as it was made",
        )
        .with_details(report.problems.join("; ")));
    }
    if let Some(prev) = &conf.prev_result {
        convert::prev_result_matches(prev, &ep)?;
    }
    Ok(())
}

/// GC: every attachment of the network not listed as valid goes.
pub async fn gc(api: &mut AgentClient<Channel>, conf: &NetConf) -> Result<(), CniError> {
    let network = convert::network_name(conf)?;
    let valid = conf
        .valid_attachments
        .iter()
        .chain(conf.attachments.iter())
        .flatten()
        .map(|a| pb::Attachment {
            container_id: a.container_id.clone(),
            ifname: a.ifname.clone(),
        })
        .collect();
    match api
        .garbage_collect(pb::GarbageCollectRequest { valid, network })
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            for a in &r.removed {
                eprintln!("trellis-cni: GC removed {} {}", a.container_id, a.ifname);
            }
            if r.errors.is_empty() {
                Ok(())
            } else {
                Err(
                    CniError::new(code::INTERNAL, "GC could not remove every attachment")
                        .with_details(r.errors.join("; ")),
                )
            }
        }
        // No such network: nothing of it to collect.
        Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
        Err(s) => Err(convert::status_error("garbage collect", &s)),
    }
}

/// STATUS: trellisd answers and is ready.
pub async fn status(api: &mut AgentClient<Channel>) -> Result<(), CniError> {
    let s = api
        .status(pb::StatusRequest {})
        .await
        .map_err(|s| {
            CniError::new(code::NOT_AVAILABLE, "trellisd did not answer Status")
                .with_details(s.message().to_owned())
        })?
        .into_inner();
    if s.ready {
        return Ok(());
    }
    Err(CniError::new(code::NOT_AVAILABLE, "trellisd is not ready")
        .with_details(s.reasons.join("; ")))
}
