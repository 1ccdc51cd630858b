//! The labs as the user runs them: `trellis-lab bgp --check` builds the
//! seed's closing step (two hosts announcing their blocks by BGP to BIRD on
//! the router, the PC reaching containers directly) and exits 0 only if every
//! probe saw the true addresses.

use std::process::Command;

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root, builds network namespaces and runs the daemons and BIRD"
)]
#[test]
fn the_bgp_lab_reaches_containers_on_both_hosts_directly() {
    trellis_testlab::require_root();
    let out = Command::new(env!("CARGO_BIN_EXE_trellis-lab"))
        .args(["bgp", "--check"])
        .output()
        .expect("run trellis-lab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "trellis-lab bgp --check failed:\n{stdout}\n{stderr}"
    );
    // BIRD learned a block from each host, with that host as next hop.
    for via in ["via 10.1.253.101", "via 10.1.253.102"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains("/26") && l.contains(via) && l.contains("as_path [64512]")),
            "no block {via} in BIRD's table:\n{stdout}"
        );
    }
    assert_eq!(
        stdout.matches(" ok\n").count(),
        4,
        "four probes, each ok:\n{stdout}"
    );
    assert!(stdout.contains("removed"), "{stdout}");
}
