//! trellisd over TCP with TLS, driven by netctl: server authentication with
//! a private CA, and mutual TLS when trellisd is given `--tls-client-ca`
//! (where a client is who its certificate's URI SAN names: the admin here,
//! and a certificate naming no one is refused).
//!
//! The certificates are made for each test by the `openssl` command (Debian's
//! `openssl` package) in a temporary directory. trellisd listens on
//! 127.0.0.1 inside its own test namespace and netctl runs in that namespace,
//! so no traffic leaves it.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output};

use trellis_testlab::require_root;

use crate::util::{Daemon, NETCTL, stderr};

const LISTEN: &str = "127.0.0.1:7443";
const URL: &str = "https://127.0.0.1:7443";

/// A CA, a server certificate for 127.0.0.1 and localhost, the admin's
/// client certificate, a client certificate naming no one, and a second CA
/// that signed none of them.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let pki = Pki {
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        for ca in ["ca", "other-ca"] {
            pki.openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
                "-subj",
                &format!("/CN=trellis test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ]);
        }
        pki.leaf(
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        pki.leaf(
            "client",
            "extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://trellis/admin\n",
        );
        pki.leaf("nobody", "extendedKeyUsage=clientAuth\n");
        pki
    }

    /// `name.pem` / `name.key`, signed by `ca` with the extensions `ext`.
    fn leaf(&self, name: &str, ext: &str) {
        let ext_file = format!("{name}.ext");
        std::fs::write(self.path(&ext_file), ext).expect("write extensions");
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN=trellis test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext_file,
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl (Debian package openssl)");
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

fn start(pki: &Pki, mutual: bool) -> Daemon {
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    );
    let mut args: Vec<&OsStr> = vec![
        "--listen".as_ref(),
        LISTEN.as_ref(),
        "--tls-cert".as_ref(),
        cert.as_os_str(),
        "--tls-key".as_ref(),
        key.as_os_str(),
    ];
    if mutual {
        args.extend(["--tls-client-ca".as_ref(), ca.as_os_str()]);
    }
    let d = Daemon::start_with(&args);
    wait_listening(&d);
    d
}

/// trellisd answers on its socket once ready; the TCP listener is bound
/// before that, so this only guards against a slow start.
fn wait_listening(d: &Daemon) {
    let ss = d.ns.exec_ok(&["ss", "-Hltn", "sport", "=", ":7443"]);
    assert!(
        ss.contains("127.0.0.1:7443"),
        "trellisd is not listening on {LISTEN}: {ss:?}\n{}",
        d.log()
    );
}

/// netctl over TCP, run inside the daemon's namespace.
fn netctl_tcp(d: &Daemon, conn: &[&str], args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", d.ns.name()])
        .arg(NETCTL)
        .args(["--endpoint", URL])
        .args(conn)
        .args(args)
        .env_remove("TRELLIS_CA")
        .env_remove("TRELLIS_CERT")
        .env_remove("TRELLIS_KEY")
        .output()
        .expect("run netctl")
}

/// Whether `netctl status` printed `Ready: yes`.
fn ready(status: &str) -> bool {
    status
        .lines()
        .any(|l| l.starts_with("Ready:") && l.trim_end().ends_with("yes"))
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        stderr(out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output, what: &str) -> (i32, String) {
    assert!(!out.status.success(), "{what} succeeded");
    (out.status.code().expect("exited"), stderr(out))
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn netctl_reaches_trellisd_over_tls_and_refuses_an_unknown_server() {
    require_root();
    let pki = Pki::new();
    let d = start(&pki, false);
    let ca = pki.arg("ca.pem");

    let status = ok(
        &netctl_tcp(&d, &["--ca", &ca], &["status"]),
        "status over TLS",
    );
    assert!(ready(&status), "{status}");
    ok(
        &netctl_tcp(
            &d,
            &["--ca", &ca],
            &[
                "network",
                "create",
                "t",
                "--subnet",
                "10.98.0.0/24",
                "--bridge",
                "ttls0",
            ],
        ),
        "network create over TLS",
    );
    let ls = ok(
        &netctl_tcp(&d, &["--ca", &ca], &["network", "ls"]),
        "network ls over TLS",
    );
    assert!(ls.lines().any(|l| l.starts_with("t ")), "{ls}");
    // The same state as on the unix socket: one daemon, two doors.
    assert!(
        d.ok(&["network", "ls"])
            .lines()
            .any(|l| l.starts_with("t "))
    );

    // A server whose certificate another CA signed is refused before any
    // request is sent: connection error, exit code 3.
    let other = pki.arg("other-ca.pem");
    let (code, err) = failed(
        &netctl_tcp(&d, &["--ca", &other], &["status"]),
        "status, wrong CA",
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("cannot connect") || err.to_lowercase().contains("certificate"),
        "{err}"
    );
    // https without a CA is a usage error; plaintext to the TLS port fails.
    let (code, err) = failed(&netctl_tcp(&d, &[], &["status"]), "status, no CA");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--ca"), "{err}");
    let plain = Command::new("ip")
        .args(["netns", "exec", d.ns.name()])
        .arg(NETCTL)
        .args(["--endpoint", "http://127.0.0.1:7443", "status"])
        .output()
        .expect("run netctl");
    let (_, err) = failed(&plain, "plaintext status to the TLS port");
    assert!(err.starts_with("error: "), "{err}");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn with_a_client_ca_trellisd_serves_only_clients_with_a_certificate() {
    require_root();
    let pki = Pki::new();
    let d = start(&pki, true);
    let ca = pki.arg("ca.pem");
    let (cert, key) = (pki.arg("client.pem"), pki.arg("client.key"));

    let out = netctl_tcp(
        &d,
        &["--ca", &ca, "--cert", &cert, "--key", &key],
        &["status"],
    );
    let status = ok(&out, "status with a client certificate");
    assert!(ready(&status), "{status}");

    let (code, err) = failed(
        &netctl_tcp(&d, &["--ca", &ca], &["status"]),
        "status without one",
    );
    assert_ne!(code, 0, "{err}");
    // A certificate trellisd's client CA did not sign (here: the other CA's
    // self-signed one) is refused too.
    let (bad_cert, bad_key) = (pki.arg("other-ca.pem"), pki.arg("other-ca.key"));
    let out = netctl_tcp(
        &d,
        &["--ca", &ca, "--cert", &bad_cert, "--key", &bad_key],
        &["status"],
    );
    failed(&out, "status with an untrusted client certificate");
    // A certificate the CA signed that names no trellis identity is
    // refused by the edge: UNAUTHENTICATED, exit code 9.
    let (anon_cert, anon_key) = (pki.arg("nobody.pem"), pki.arg("nobody.key"));
    let out = netctl_tcp(
        &d,
        &["--ca", &ca, "--cert", &anon_cert, "--key", &anon_key],
        &["status"],
    );
    let (code, err) = failed(&out, "status with a certificate naming no one");
    assert_eq!(code, 9, "{err}");
    assert!(err.contains("UNAUTHENTICATED"), "{err}");
    // --cert without --key is refused by netctl itself.
    let out = netctl_tcp(&d, &["--ca", &ca, "--cert", &cert], &["status"]);
    let (code, err) = failed(&out, "--cert without --key");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--key"), "{err}");
}
