//! MAC addresses (EUI-48), as callers write them and as interfaces carry them.

use crate::InvalidInput;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A MAC address (EUI-48): six octets, written `aa:bb:cc:dd:ee:ff`.
///
/// Parsing takes exactly six colon-separated pairs of hex digits, in either
/// case (`AA:bb:…`); [`Display`](fmt::Display) writes lower case, so a MAC
/// given in upper case reads back the way the kernel shows it. Parsing
/// checks the syntax only: whether the address may be given to an interface
/// is [`MacAddr::check_assignable`]'s question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// The address of these octets.
    pub const fn new(octets: [u8; 6]) -> Self {
        Self(octets)
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (either case), reporting errors against
    /// `field`.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, InvalidInput> {
        let bad = || {
            InvalidInput::new(
                field,
                s,
                "not a MAC address: six pairs of hex digits separated by ':' (aa:bb:cc:dd:ee:ff)",
            )
        };
        let mut octets = [0u8; 6];
        let mut parts = s.split(':');
        for o in &mut octets {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *o = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(octets))
    }

    /// Its six octets.
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// A group address: the lowest bit of the first octet (IEEE 802) is set.
    /// The broadcast address is one.
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// `ff:ff:ff:ff:ff:ff`.
    pub fn is_broadcast(self) -> bool {
        self.0 == [0xff; 6]
    }

    /// `00:00:00:00:00:00`, which names no station.
    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }

    /// Refuses, as the address of an interface, what the kernel would refuse
    /// (`eth_validate_addr`: a group address, all zeros) or what would take
    /// other stations' frames: the broadcast and multicast addresses, and
    /// `00:00:00:00:00:00`.
    pub fn check_assignable(self, field: &'static str) -> Result<(), InvalidInput> {
        let why = if self.is_broadcast() {
            "the broadcast address cannot be an interface's MAC"
        } else if self.is_multicast() {
            "a multicast MAC (lowest bit of the first octet set) cannot be an interface's MAC"
        } else if self.is_zero() {
            "the all-zero MAC cannot be an interface's MAC"
        } else {
            return Ok(());
        };
        Err(InvalidInput::new(field, self, why))
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        Self(octets)
    }
}

impl From<MacAddr> for [u8; 6] {
    fn from(m: MacAddr) -> Self {
        m.0
    }
}

impl FromStr for MacAddr {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        Self::parse("mac", s)
    }
}

impl TryFrom<String> for MacAddr {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, InvalidInput> {
        Self::parse("mac", &s)
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_either_case_and_prints_lower() {
        let m: MacAddr = "02:AB:cd:0E:f0:01".parse().unwrap();
        assert_eq!(m.octets(), [0x02, 0xab, 0xcd, 0x0e, 0xf0, 0x01]);
        assert_eq!(m.to_string(), "02:ab:cd:0e:f0:01");
        assert!(m.check_assignable("mac").is_ok());
    }

    #[test]
    fn bad_syntax_names_the_field() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "02-00-00-00-00-01",
            "2:0:0:0:0:1",
            "02:00:00:00:00:0g",
            "02:00:00:00:00:+1",
            "0200.0000.0001",
            "02:00:00:00:00:01:",
        ] {
            let e = MacAddr::parse("mac", bad).unwrap_err();
            assert_eq!((e.field, e.value.as_str()), ("mac", bad));
        }
    }

    #[test]
    fn group_broadcast_and_zero_cannot_be_assigned() {
        for (s, word) in [
            ("01:00:5e:00:00:01", "multicast"),
            ("03:00:00:00:00:01", "multicast"),
            ("ff:ff:ff:ff:ff:ff", "broadcast"),
            ("00:00:00:00:00:00", "all-zero"),
        ] {
            let e = s.parse::<MacAddr>().unwrap().check_assignable("mac");
            let e = e.unwrap_err();
            assert_eq!((e.field, e.value.as_str()), ("mac", s));
            assert!(e.reason.contains(word), "{s}: {e}");
        }
        // A vendor's (universally administered) unicast MAC is fine.
        assert!(
            "00:16:3e:12:34:56"
                .parse::<MacAddr>()
                .unwrap()
                .check_assignable("mac")
                .is_ok()
        );
    }

    #[test]
    fn serde_is_the_text_validated() {
        let m: MacAddr = serde_json::from_str("\"0A:00:00:00:00:01\"").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"0a:00:00:00:00:01\"");
        assert!(serde_json::from_str::<MacAddr>("\"0a:00\"").is_err());
    }
}
