//! The controller over TCP with TLS (server authentication with a private
//! CA), as netctl's TLS tests do it: the certificates are made for the test
//! by the `openssl` command (Debian's `openssl` package) in a temporary
//! directory, and the controller listens on 127.0.0.1, port 0.

use crate::util::{Daemon, routed_pool};
use std::path::Path;
use std::process::Command;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use trellis_proto::v1 as pb;

/// Runs `openssl` with the whitespace-separated `args` in `dir`, panicking
/// with its stderr on failure.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("run openssl (Debian package openssl)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openssl {args}: {err}");
}

const EC: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

/// A self-signed CA `name.pem`/`name.key` in `dir`.
fn ca(dir: &Path, name: &str) {
    let subj = format!("-subj /CN=trellis-test-{name} -keyout {name}.key -out {name}.pem");
    openssl(dir, &format!("req -x509 {EC} -days 1 {subj}"));
}

/// `server.pem`/`server.key` for 127.0.0.1 and localhost, signed by `ca`.
fn server_cert(dir: &Path) {
    let ext = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n";
    std::fs::write(dir.join("server.ext"), ext).unwrap();
    let subj = "-subj /CN=trellis-test-server -keyout server.key -out server.csr";
    openssl(dir, &format!("req {EC} {subj}"));
    openssl(
        dir,
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
         -extfile server.ext -out server.pem",
    );
}

async fn connect(url: &str, trust: &Path) -> Result<Channel, tonic::transport::Error> {
    let ca = Certificate::from_pem(std::fs::read(trust).unwrap());
    let tls = ClientTlsConfig::new()
        .ca_certificate(ca)
        .domain_name("localhost");
    Endpoint::from_shared(url.to_owned())?
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test]
async fn tls_clients_that_trust_the_ca_are_served_and_others_are_not() {
    let pki = tempfile::tempdir().unwrap();
    let p = |name: &str| pki.path().join(name);
    ca(pki.path(), "ca");
    ca(pki.path(), "other-ca");
    server_cert(pki.path());

    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (p("server.pem"), p("server.key"));
    let d = Daemon::start(
        dir.path(),
        &[
            "--listen=127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = format!("https://{}", d.tcp_addr());
    // Without --tls-client-ca every TCP client is the admin, and the
    // controller says so.
    let log = d.log();
    assert!(log.contains("WITHOUT client certificates"), "{log}");

    let channel = connect(&url, &p("ca.pem")).await.unwrap();
    let mut c = pb::ControllerClient::new(channel);
    let pool = c.create_pool(routed_pool("pods", "10.244.0.0/16", 0)).await;
    assert_eq!(pool.unwrap().into_inner().spec.unwrap().name, "pods");

    // A client that trusts another CA refuses the server's certificate.
    let untrusted = match connect(&url, &p("other-ca.pem")).await {
        Err(_) => true,
        Ok(ch) => {
            let mut c = pb::ControllerClient::new(ch);
            c.list_pools(pb::ListPoolsRequest {}).await.is_err()
        }
    };
    assert!(untrusted, "a client trusting another CA was served");

    // Plaintext to the TLS port is not served either.
    let plain = format!("http://{}", d.tcp_addr());
    let refused = match pb::ControllerClient::connect(plain).await {
        Err(_) => true,
        Ok(mut c) => c.list_pools(pb::ListPoolsRequest {}).await.is_err(),
    };
    assert!(refused, "plaintext was served on the TLS port");
}
