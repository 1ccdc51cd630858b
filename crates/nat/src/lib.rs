//! nftables NAT (masquerade, published ports, hairpin) over raw netlink
