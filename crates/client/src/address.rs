//! Where a server listens, as a user writes it: `unix:PATH`,
//! `unix:///ABSOLUTE`, a plain socket path, or an `http(s)://` URL — gRPC's
//! spellings of a target.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a server listens: a unix socket, or a URL (`https://HOST:PORT`)
/// that [`crate::channel`] dials, with TLS for https.
///
/// Parse one with [`str::parse`]; it prints back as `unix:PATH` or the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// The path of a unix socket.
    Unix(PathBuf),
    /// An `http://` or `https://` URL; for [`crate::controller`], the URLs
    /// of an HA controller's replicas, comma-separated.
    Url(String),
}

/// A spelling [`Address`] does not take, naming it and what is wrong:
/// `address "tcp://ctl1:7444": scheme "tcp" is not unix, http or https`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("address {spec:?}: {why}")]
pub struct AddressError {
    spec: String,
    why: String,
}

impl FromStr for Address {
    type Err = AddressError;

    /// Parses `unix:PATH`, `unix:///ABSOLUTE`, a plain socket path, or an
    /// `http(s)://` URL. Other schemes are refused, so that `tcp://…` is not
    /// taken for a socket named `tcp:`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| AddressError {
            spec: spec.to_owned(),
            why: why.to_owned(),
        };
        if let Some(rest) = spec.strip_prefix("unix:") {
            // gRPC's `unix://` form has an empty authority: `unix:///run/x.sock`.
            let path = match rest.strip_prefix("//") {
                Some(abs) if abs.starts_with('/') => abs,
                Some(_) => return Err(bad("expected unix:PATH or unix:///ABSOLUTE-PATH")),
                None => rest,
            };
            if path.is_empty() {
                return Err(bad("the socket path is empty"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        match spec.split_once("://") {
            Some(("http" | "https", "")) => Err(bad("the host is missing")),
            Some(("http" | "https", _)) => Ok(Address::Url(spec.to_owned())),
            Some((scheme, _)) => Err(bad(&format!(
                "scheme {scheme:?} is not unix, http or https"
            ))),
            None if spec.is_empty() => Err(bad("expected unix:PATH, PATH or https://HOST:PORT")),
            None => Ok(Address::Unix(PathBuf::from(spec))),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Url(url) => f.write_str(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<Address, String> {
        spec.parse::<Address>().map_err(|e| e.to_string())
    }

    #[test]
    fn addresses_are_sockets_or_urls() {
        let unix = |p: &str| Ok(Address::Unix(PathBuf::from(p)));
        assert_eq!(
            parse("unix:/run/trellis/controller.sock"),
            unix("/run/trellis/controller.sock")
        );
        assert_eq!(parse("unix:///run/c.sock"), unix("/run/c.sock"));
        assert_eq!(parse("unix:rel/c.sock"), unix("rel/c.sock"));
        assert_eq!(parse("/run/c.sock"), unix("/run/c.sock"));
        assert_eq!(parse("c.sock"), unix("c.sock"));
        for url in [
            "https://ctl1:7444",
            "http://127.0.0.1:7444",
            "https://[::1]:7444",
            "https://ctl1:7444,https://ctl2:7444",
        ] {
            assert_eq!(parse(url), Ok(Address::Url(url.into())), "{url}");
        }
    }

    #[test]
    fn a_refusal_names_the_address_and_what_is_wrong() {
        for (bad, why) in [
            ("", "expected unix:PATH, PATH or https://HOST:PORT"),
            ("unix:", "the socket path is empty"),
            (
                "unix://host/c.sock",
                "expected unix:PATH or unix:///ABSOLUTE-PATH",
            ),
            (
                "tcp://ctl1:7444",
                "scheme \"tcp\" is not unix, http or https",
            ),
            ("https://", "the host is missing"),
        ] {
            assert_eq!(parse(bad), Err(format!("address {bad:?}: {why}")), "{bad}");
        }
    }

    #[test]
    fn an_address_prints_as_it_parses() {
        for spec in ["unix:/run/c.sock", "https://ctl1:7444"] {
            assert_eq!(spec.parse::<Address>().unwrap().to_string(), spec);
        }
        let plain: Address = "/run/c.sock".parse().unwrap();
        assert_eq!(plain.to_string(), "unix:/run/c.sock");
    }
}
