//! Privileged tests of trellis-nat, each in network namespaces of its own.
//! They need root and fail (never skip) without it.

mod util;

use trellis_nat::{Error, Nat, NetworkNat, NftNat};
use trellis_types::{IfName, PortMapping, Protocol};
use util::Netns;

fn tcp(host: u16, ip: &str, port: u16) -> PortMapping {
    PortMapping::new(Protocol::Tcp, host.into(), ip.parse().unwrap(), port.into()).unwrap()
}

fn net(subnet: &str, bridge: &str, masquerade: bool) -> NetworkNat {
    NetworkNat { subnet: subnet.parse().unwrap(), bridge: IfName::parse("bridge", bridge).unwrap(), masquerade }
}

#[tokio::test]
async fn smoke() {
    let ns = Netns::new("smoke");
    let nat = NftNat::in_netns(&ns.path()).unwrap();
    nat.ensure_table().await.unwrap();
    println!("{}", ns.nft_table().unwrap());
    nat.add_network(&net("192.168.169.0/24", "br0", true)).await.unwrap();
    nat.publish(&[tcp(8081, "192.168.169.3", 80)]).await.unwrap();
    println!("{}", ns.nft_table().unwrap());
    println!("{:?}", nat.list_published().await.unwrap());
    println!("{:?}", nat.list_networks().await.unwrap());
    let _ = Error::NoTable("x");
}
