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
use trellis_types::{Handle, Protocol};

/// Which handle holds each (protocol, host port).
#[derive(Default)]
pub(crate) struct Ports {
    held: Mutex<HashMap<(Protocol, u16), Handle>>,
}

impl Ports {
    /// Claims every port of `ports` for `handle`, all or none. Ports already
    /// held by the same handle count as claimed (a retried attach).
    pub(crate) fn claim(&self, handle: &Handle, ports: &[PortSpec]) -> Result<(), Error> {
        let mut held = self.held.lock().expect("ports lock");
        let mut seen = std::collections::HashSet::new();
        for p in ports {
            let key = (p.protocol, p.host_port);
            let taken = held.get(&key).is_some_and(|h| h != handle);
            if taken || !seen.insert(key) {
                return Err(Error::PortInUse {
                    protocol: p.protocol,
                    host_port: p.host_port,
                });
            }
        }
        for p in ports {
            held.insert((p.protocol, p.host_port), handle.clone());
        }
        Ok(())
    }

    /// Releases every port `handle` holds.
    pub(crate) fn release(&self, handle: &Handle) {
        self.held
            .lock()
            .expect("ports lock")
            .retain(|_, h| h != handle);
    }
}
