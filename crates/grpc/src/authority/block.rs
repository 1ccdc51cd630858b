//! One header block in, the same fields out as literals without indexing,
//! with an `:authority` that h2 accepts.
//!
//! The client's HPACK encoder indexes fields into its dynamic table and
//! refers to them in later blocks, so every block of the connection goes
//! through the one [`Decoder`] kept here, in order, including the dynamic
//! table size updates (RFC 7541 §4.2, §6.3) that change what later indices
//! mean. What goes out uses neither table nor Huffman coding: "literal
//! header field without indexing — new name" (RFC 7541 §6.2.2), so the
//! server's decoder never inserts anything and cannot diverge from ours.

use super::hpack::{Decoder, Field, HpackError};

/// The dynamic table size both HPACK ends start with (RFC 9113 §6.5.2,
/// SETTINGS_HEADER_TABLE_SIZE); tonic's server does not advertise another,
/// so a client may never raise its table above it.
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// What a client's unusable `:authority` (a unix socket's path) becomes.
pub const LOCAL_AUTHORITY: &[u8] = b"localhost";

/// Re-encodes the header blocks of one connection, in order.
pub struct BlockRewriter {
    decoder: Decoder,
}

impl Default for BlockRewriter {
    fn default() -> Self {
        BlockRewriter {
            decoder: Decoder::new(DEFAULT_TABLE_SIZE),
        }
    }
}

impl BlockRewriter {
    /// Decodes the complete header block `block` and appends its fields to
    /// `out` as literals without indexing, `:authority` normalised.
    pub fn rewrite(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
        self.decoder.decode(block, |f: Field<'_>| {
            let value = if f.name == b":authority" && !valid_authority(f.value) {
                LOCAL_AUTHORITY
            } else {
                f.value
            };
            literal(out, f.name, value, f.never_indexed);
        })
    }
}

/// Whether h2 takes `value` as an authority (it parses `:authority` with
/// `http::uri::Authority` and refuses the request as malformed otherwise).
/// A valid one (Go's `localhost`, a TCP client's `host:port`) is kept.
fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// A literal header field without indexing or never indexed, new name, no
/// Huffman coding (RFC 7541 §6.2.2, §6.2.3: the 0000 or 0001 prefix and a
/// zero index, then two strings).
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8], never_indexed: bool) {
    out.push(if never_indexed { 0x10 } else { 0 });
    string(out, name);
    string(out, value);
}

/// A string literal with H = 0 (RFC 7541 §5.2): its length as a 7-bit
/// prefix integer, then the octets.
fn string(out: &mut Vec<u8>, s: &[u8]) {
    integer(out, s.len(), 7, 0);
    out.extend_from_slice(s);
}

/// An integer with an `n`-bit prefix (RFC 7541 §5.1), `high` holding the
/// bits above the prefix in the first octet.
pub fn integer(out: &mut Vec<u8>, mut value: usize, n: u8, high: u8) {
    let max = (1usize << n) - 1;
    if value < max {
        // Fits: `value < max <= 0xff`.
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}
