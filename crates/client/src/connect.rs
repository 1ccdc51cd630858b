//! Dialling one server: a unix socket as it is, a URL in plaintext or, for
//! `https://`, with TLS. trellisd's services (agent, BGP) and the
//! controller's all go through [`channel`].

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use trellis_proto::v1::{AgentClient, BgpClient};

use crate::{Address, ConnectError, Error, TlsFile, UsageError};

/// The TLS files for an `https://` address. A unix socket ignores them; an
/// `http://` URL refuses them, so that a user who meant TLS is told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// PEM file of the CA that signed the server's certificate; required
    /// for `https://`.
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for a server that asks for one; with `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
}

/// A client of trellisd's agent service at `addr`; `setting` names the
/// option `addr` came from, for messages (see [`channel`]).
pub async fn agent(
    addr: &Address,
    setting: &str,
    tls: &Tls,
) -> Result<AgentClient<Channel>, Error> {
    Ok(AgentClient::new(channel(addr, setting, tls).await?))
}

/// A client of trellisd's BGP service, which it serves beside the agent's
/// on the same socket or endpoint.
pub async fn bgp(addr: &Address, setting: &str, tls: &Tls) -> Result<BgpClient<Channel>, Error> {
    Ok(BgpClient::new(channel(addr, setting, tls).await?))
}

/// A channel to `addr`, with the files of `tls` for an `https://` URL.
///
/// `setting` is the caller's name for the option `addr` came from
/// (`--endpoint`, `--controller`), which [`UsageError`]s name. The settings
/// are checked before anything is dialled; a server that is not there is a
/// [`ConnectError`] naming the address.
pub async fn channel(addr: &Address, setting: &str, tls: &Tls) -> Result<Channel, Error> {
    match addr {
        Address::Unix(path) => Ok(trellis_proto::channel_unix(path)
            .await
            .map_err(ConnectError::from)?),
        Address::Url(url) => {
            let endpoint = endpoint(url, setting, tls)?;
            endpoint.connect().await.map_err(|source| {
                let url = url.clone();
                ConnectError::Url { url, source }.into()
            })
        }
    }
}

/// The endpoint of `url` with its TLS configured: every check of the
/// settings, made before dialling.
fn endpoint(url: &str, setting: &str, tls: &Tls) -> Result<Endpoint, Error> {
    let setting = setting.to_owned();
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|source| UsageError::Url {
        setting: setting.clone(),
        url: url.to_owned(),
        source,
    })?;
    let identity = identity(tls)?;
    let scheme = endpoint.uri().scheme_str();
    if identity.is_some() && scheme != Some("https") {
        let file = TlsFile::Cert;
        return Err(UsageError::NotHttps { file, setting }.into());
    }
    match (scheme, tls.ca.as_deref()) {
        (Some("https"), Some(ca)) => {
            let mut config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(TlsFile::Ca, ca)?));
            if let Some((cert, key)) = identity {
                let (cert, key) = (read(TlsFile::Cert, cert)?, read(TlsFile::Key, key)?);
                config = config.identity(Identity::from_pem(cert, key));
            }
            endpoint
                .tls_config(config)
                .map_err(|source| Error::Tls { source })
        }
        (Some("https"), None) => Err(UsageError::NoCa { setting }.into()),
        (Some("http"), None) => Ok(endpoint),
        (Some("http"), Some(_)) => {
            let file = TlsFile::Ca;
            Err(UsageError::NotHttps { file, setting }.into())
        }
        _ => {
            let url = url.to_owned();
            Err(UsageError::Scheme { setting, url }.into())
        }
    }
}

/// The client certificate and key of `tls`, if any: both or neither.
fn identity(tls: &Tls) -> Result<Option<(&Path, &Path)>, UsageError> {
    match (tls.cert.as_deref(), tls.key.as_deref()) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(UsageError::Unpaired {
            given: TlsFile::Cert,
            missing: TlsFile::Key,
        }),
        (None, Some(_)) => Err(UsageError::Unpaired {
            given: TlsFile::Key,
            missing: TlsFile::Cert,
        }),
    }
}

fn read(file: TlsFile, path: &Path) -> Result<Vec<u8>, UsageError> {
    std::fs::read(path).map_err(|source| UsageError::Unreadable {
        file,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TLS files as `args` pairs name them (`["--ca", "/x.pem"]`).
    fn tls(args: &[&str]) -> Tls {
        let flag = |name: &str| {
            let i = args.iter().position(|a| *a == name)?;
            Some(PathBuf::from(args[i + 1]))
        };
        Tls {
            ca: flag("--ca"),
            cert: flag("--cert"),
            key: flag("--key"),
        }
    }

    async fn refused(addr: &str, setting: &str, args: &[&str]) -> Error {
        let addr: Address = addr.parse().unwrap();
        channel(&addr, setting, &tls(args)).await.unwrap_err()
    }

    /// The message of a usage error; panics on any other class.
    async fn usage(addr: &str, setting: &str, args: &[&str]) -> String {
        match refused(addr, setting, args).await {
            Error::Usage(e) => e.to_string(),
            other => panic!("{addr} {args:?}: not a usage error: {other}"),
        }
    }

    #[tokio::test]
    async fn tls_options_are_checked_for_either_server_before_dialling() {
        let url = "https://ctl.invalid:7443";
        let msg = usage(url, "--controller", &[]).await;
        assert_eq!(msg, "--controller with https needs --ca");
        let msg = usage(url, "--endpoint", &[]).await;
        assert_eq!(msg, "--endpoint with https needs --ca");
        let plain = "http://ctl.invalid:7443";
        let msg = usage(plain, "--controller", &["--ca", "/x.pem"]).await;
        assert_eq!(msg, "--ca needs an https:// --controller");
        let args = ["--cert", "/c.pem", "--key", "/k.pem"];
        let msg = usage(plain, "--controller", &args).await;
        assert_eq!(msg, "--cert needs an https:// --controller");
        let msg = usage(url, "--controller", &["--ca", "/nonexistent/ca.pem"]).await;
        assert!(msg.starts_with("--ca /nonexistent/ca.pem: "), "{msg}");
        assert!(msg.contains("No such file"), "{msg}");
    }

    #[tokio::test]
    async fn a_client_certificate_needs_its_key_and_both_must_be_readable() {
        let url = "https://ctl.invalid:7443";
        let msg = usage(url, "--endpoint", &["--ca", "/x.pem", "--cert", "/c.pem"]).await;
        assert_eq!(msg, "--cert needs --key");
        let msg = usage(url, "--endpoint", &["--ca", "/x.pem", "--key", "/k.pem"]).await;
        assert_eq!(msg, "--key needs --cert");
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "").unwrap();
        let ca = ca.to_str().unwrap();
        let args = [
            "--ca",
            ca,
            "--cert",
            "/nonexistent/c.pem",
            "--key",
            "/k.pem",
        ];
        let msg = usage(url, "--endpoint", &args).await;
        assert!(msg.starts_with("--cert /nonexistent/c.pem: "), "{msg}");
    }

    #[tokio::test]
    async fn files_that_are_not_pem_are_refused_by_the_tls_library() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, "not PEM").unwrap();
            path.to_str().unwrap().to_owned()
        };
        let (ca, cert, key) = (file("ca.pem"), file("c.pem"), file("k.pem"));
        let args = ["--ca", &ca, "--cert", &cert, "--key", &key];
        let err = refused("https://ctl.invalid:7443", "--endpoint", &args).await;
        assert!(matches!(err, Error::Tls { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("the TLS files (--ca, --cert, --key): "),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_malformed_url_is_a_usage_error_naming_it() {
        let msg = usage("https://ctl 1:7443", "--endpoint", &[]).await;
        assert_eq!(msg, "--endpoint \"https://ctl 1:7443\": invalid URI");
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_connection_failure_naming_it() {
        let path = "/nonexistent/trellisd.sock";
        let err = refused(path, "--socket", &[]).await;
        assert!(
            matches!(err, Error::Connect(ConnectError::Unix(_))),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("cannot connect to {path}: ")),
            "{msg}"
        );
        assert!(msg.contains("No such file or directory"), "{msg}");
    }

    #[tokio::test]
    async fn tls_files_are_not_read_for_a_unix_socket() {
        let args = ["--ca", "/nonexistent/ca.pem"];
        let err = refused("unix:/nonexistent/controller.sock", "--controller", &args).await;
        assert!(matches!(err, Error::Connect(_)), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/controller.sock"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_refused_url_is_a_connection_failure_naming_it_and_the_cause() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let err = refused(&url, "--endpoint", &[]).await;
        assert!(
            matches!(err, Error::Connect(ConnectError::Url { .. })),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("cannot connect to {url}: ")),
            "{msg}"
        );
        assert!(
            msg.ends_with(": Connection refused (os error 111)"),
            "{msg}"
        );
        assert_eq!(msg.matches("tcp connect error").count(), 1, "{msg}");
    }
}
