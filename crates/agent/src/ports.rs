//! Host ports claimed by endpoints.
//!
//! A host port is claimed here, in a short critical section, before anything
//! is plumbed, so that two concurrent attaches asking for the same port cannot
//! both get past validation; the NAT map would refuse the second anyway, but
//! only after its veth and address were made. The kernel stays the authority
//! (its map refuses duplicates too); this is the fast, early refusal.

use crate::Error;
use crate::model::PortSpec;
use std::collections::HashMap;
use std::sync::Mutex;
use trellis_types::Handle;

/// Which handle holds each published port (a port on every host address
/// and the same port on one address clash, as in Docker).
#[derive(Default)]
pub(crate) struct Ports {
    held: Mutex<HashMap<Handle, Vec<PortSpec>>>,
}

impl Ports {
    /// Claims every port of `ports` for `handle`, all or none. Ports already
    /// held by the same handle count as claimed (a retried attach).
    pub(crate) fn claim(&self, handle: &Handle, ports: &[PortSpec]) -> Result<(), Error> {
        let mut held = self.held.lock().expect("ports lock");
        for (i, p) in ports.iter().enumerate() {
            let twice = ports[..i].iter().any(|o| o.clashes_with(p));
            let taken = held
                .iter()
                .any(|(h, v)| h != handle && v.iter().any(|o| o.clashes_with(p)));
            if twice || taken {
                return Err(Error::PortInUse {
                    protocol: p.protocol,
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                });
            }
        }
        if !ports.is_empty() {
            held.insert(handle.clone(), ports.to_vec());
        }
        Ok(())
    }

    /// Releases every port `handle` holds.
    pub(crate) fn release(&self, handle: &Handle) {
        self.held.lock().expect("ports lock").remove(handle);
    }
}
