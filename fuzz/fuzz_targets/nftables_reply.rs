//! The kernel's nf_tables replies as trellis reads them
//! (`trellis_nat::fuzz::replies`): the netlink framing and error answers
//! with their extended-ack text, set elements read back as published ports,
//! networks, bridge pairs and routed-pool prefixes, the host's chains and
//! rules, and the host-firewall plan made from what was read.
//!
//! Input: the first byte picks what trellis admits (bits 0–2: a bridge
//! network with IPv4, with IPv6, routed ports); the rest is the datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis_nat::Admitted;
use trellis_types::IfName;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, datagram)) = data.split_first() else {
        return;
    };
    let mut admitted = Vec::new();
    if pick & 0b11 != 0 {
        admitted.push(Admitted::Bridge {
            network: "web".into(),
            bridge: IfName::parse("bridge", "br-web").expect("a valid name"),
            v4: pick & 0b01 != 0,
            v6: pick & 0b10 != 0,
        });
    }
    if pick & 0b100 != 0 {
        admitted.push(Admitted::RoutedPorts { v4: true, v6: true });
    }
    trellis_nat::fuzz::replies(datagram, &admitted);
});
