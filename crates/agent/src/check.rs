//! Check: does the kernel still hold what an endpoint's record says?
//!
//! Read-only: the endpoint's slice of the desired state is diffed against
//! the same slice observed in the kernel, and each change the diff would
//! make is reported as the sentences that say why, naming the object at
//! fault; an empty list means the endpoint is healthy. What `check` reports,
//! [`Agent::reconcile`] applies.

use crate::Error;
use crate::agent::Agent;
use crate::node::{self, diff};
use trellis_types::{ContainerId, Handle, IfName};

impl Agent {
    /// The differences between an endpoint's record and the kernel; empty
    /// when it is healthy. [`Error::EndpointNotFound`] if nothing is recorded.
    pub async fn check(
        &self,
        container: &ContainerId,
        ifname: &IfName,
    ) -> Result<Vec<String>, Error> {
        let handle = Handle::new(container.clone(), ifname.clone());
        let ep = self
            .endpoint(container, ifname)
            .await?
            .ok_or_else(|| Error::EndpointNotFound(handle.to_string()))?;
        let Ok(net) = self.network(ep.request.network.as_str()) else {
            let why = format!("network {:?} is not defined", ep.request.network);
            return Ok(vec![why]);
        };
        let mut problems = Vec::new();
        if self.be.links.check_netns(&ep.request.netns).is_err() {
            problems.push(format!("netns {} is gone", ep.request.netns));
        }
        let want =
            node::desired(&[net], std::slice::from_ref(&ep), &[], None).slice(&ep.host_ifname);
        let be = &self.be;
        let have = node::observe_port(&*be.links, &*be.routes, &*be.nat, &want).await?;
        problems.extend(diff(&want, &have).iter().flat_map(|c| c.problems()));
        Ok(problems)
    }
}
