//! The real backends, aimed at a host namespace.

use crate::{Backends, Error};
use std::sync::Arc;
use trellis_link::{LinkError, NetlinkLinks, Sockets};
use trellis_nat::NftNat;
use trellis_route::NetlinkRoutes;
use trellis_store::KvStore;
use trellis_types::NetnsPath;

impl Backends {
    /// Kernel backends for the host namespace at `host` (`None`: the namespace
    /// this process runs in), recording into `store`. One rtnetlink socket is
    /// shared by links and routes; NAT keeps its own nf_tables socket.
    pub async fn kernel(host: Option<&NetnsPath>, store: Arc<dyn KvStore>) -> Result<Self, Error> {
        let sockets = match host {
            Some(path) => Sockets::in_netns(path).await,
            None => Sockets::current().await,
        }
        .map_err(LinkError::from)?;
        let nat = match host {
            Some(path) => NftNat::in_netns(path)?,
            None => NftNat::current()?,
        };
        // One nf_tables socket for trellis's table and the host's chains.
        let nat = Arc::new(nat);
        Ok(Backends {
            links: Arc::new(NetlinkLinks::new(sockets.clone())),
            routes: Arc::new(NetlinkRoutes::new(sockets)),
            hostfw: nat.clone(),
            nat,
            store,
        })
    }
}
