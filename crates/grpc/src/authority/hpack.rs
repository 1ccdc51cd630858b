//! An HPACK decoder (RFC 7541) that keeps a connection's dynamic table.
//!
//! Written here rather than taken from a crate: h2 keeps its decoder
//! private, and the published ones either rebuild a Huffman hash table for
//! every string (about 30 µs each, on every request of a Huffman-coding
//! client such as tonic or grpc-go) or are unmaintained. This one is the
//! RFC's decoding procedure and nothing more: [`Decoder::decode`] reports
//! each field of a block, in order, and maintains the table as the client's
//! encoder does.

use super::huffman::{self, HuffmanError};
use std::borrow::Cow;
use std::collections::VecDeque;

/// Why a header block does not decode: the connection must close (RFC 9113
/// §4.3, COMPRESSION_ERROR).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    /// An integer runs past the block or above 2^28 (RFC 7541 §5.1).
    #[error("an integer is truncated or too large")]
    Integer,
    /// A string runs past the end of the block.
    #[error("a string of {0} octets runs past the end of the header block")]
    Truncated(usize),
    /// An index in neither table (RFC 7541 §2.3.3).
    #[error("index {0} is in neither the static nor the dynamic table")]
    Index(usize),
    /// A Huffman-coded string that does not decode.
    #[error(transparent)]
    Huffman(#[from] HuffmanError),
    /// A table size above what the server allows (RFC 7541 §6.3).
    #[error("dynamic table size update to {size} exceeds the limit {limit}")]
    TableSize {
        /// The size asked for.
        size: usize,
        /// The server's SETTINGS_HEADER_TABLE_SIZE.
        limit: usize,
    },
    /// A size update after a field (RFC 7541 §4.2: only at the start).
    #[error("dynamic table size update after a header field")]
    LateSizeUpdate,
}

/// A decoded field. Names and values are raw octets: h2 validates them.
pub struct Field<'a> {
    /// The field name.
    pub name: &'a [u8],
    /// The field value.
    pub value: &'a [u8],
    /// Sent as "never indexed" (RFC 7541 §6.2.3): intermediaries must keep
    /// that representation.
    pub never_indexed: bool,
}

/// A literal field's name and value: borrowed from the block when sent
/// raw, owned when Huffman-decoded or taken from a table.
type Literal<'b> = (Cow<'b, [u8]>, Cow<'b, [u8]>);

/// One connection's decoding context.
pub struct Decoder {
    /// Newest first: index 62 is `table[0]`.
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// RFC 7541 §4.1: octets plus 32 per entry.
    size: usize,
    max_size: usize,
    limit: usize,
}

impl Decoder {
    /// A decoder whose table may grow to `limit` octets (the server's
    /// SETTINGS_HEADER_TABLE_SIZE), starting at that size.
    pub fn new(limit: usize) -> Self {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: limit,
            limit,
        }
    }

    /// Decodes the complete header block `block`, calling `field` for each
    /// field in order and updating the dynamic table as the block says.
    pub fn decode(
        &mut self,
        mut block: &[u8],
        mut field: impl FnMut(Field<'_>),
    ) -> Result<(), HpackError> {
        let mut fields_seen = false;
        while let Some(&first) = block.first() {
            if first & 0x80 != 0 {
                let index = integer(&mut block, 7)?;
                let (name, value) = self.get(index)?;
                let never_indexed = false;
                field(Field {
                    name,
                    value,
                    never_indexed,
                });
            } else if first & 0xc0 == 0x40 {
                let (name, value) = self.literal(&mut block, 6)?;
                let never_indexed = false;
                field(Field {
                    name: &name,
                    value: &value,
                    never_indexed,
                });
                self.insert(name.into_owned(), value.into_owned());
            } else if first & 0xe0 == 0x20 {
                if fields_seen {
                    return Err(HpackError::LateSizeUpdate);
                }
                let size = integer(&mut block, 5)?;
                self.resize(size)?;
                continue;
            } else {
                let never_indexed = first & 0x10 != 0;
                let (name, value) = self.literal(&mut block, 4)?;
                field(Field {
                    name: &name,
                    value: &value,
                    never_indexed,
                });
            }
            fields_seen = true;
        }
        Ok(())
    }

    /// A literal field: its name by index (non-zero `n`-bit prefix) or as a
    /// string, then its value (RFC 7541 §6.2).
    fn literal<'b>(&self, block: &mut &'b [u8], n: u8) -> Result<Literal<'b>, HpackError> {
        let index = integer(block, n)?;
        let name = if index == 0 {
            string(block)?
        } else {
            Cow::Owned(self.get(index)?.0.to_vec())
        };
        Ok((name, string(block)?))
    }

    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match index {
            0 => Err(HpackError::Index(0)),
            1..=61 => Ok(STATIC[index - 1]),
            _ => self
                .table
                .get(index - 62)
                .map(|(n, v)| (&n[..], &v[..]))
                .ok_or(HpackError::Index(index)),
        }
    }

    /// Adds an entry, evicting the oldest ones to make room (RFC 7541 §4.4).
    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let size = name.len() + value.len() + 32;
        self.evict(self.max_size.saturating_sub(size));
        if size <= self.max_size {
            self.size += size;
            self.table.push_front((name, value));
        }
    }

    /// A dynamic table size update (RFC 7541 §6.3, §4.3).
    fn resize(&mut self, size: usize) -> Result<(), HpackError> {
        if size > self.limit {
            let limit = self.limit;
            return Err(HpackError::TableSize { size, limit });
        }
        self.max_size = size;
        self.evict(size);
        Ok(())
    }

    /// Evicts the oldest entries until the table holds at most `room` octets.
    fn evict(&mut self, room: usize) {
        while self.size > room {
            let Some((n, v)) = self.table.pop_back() else {
                break;
            };
            self.size -= n.len() + v.len() + 32;
        }
    }
}

/// An integer with an `n`-bit prefix (RFC 7541 §5.1), at most 2^28 + 2^n.
fn integer(block: &mut &[u8], n: u8) -> Result<usize, HpackError> {
    let (&first, mut rest) = block.split_first().ok_or(HpackError::Integer)?;
    let max = (1usize << n) - 1;
    let mut value = usize::from(first) & max;
    if value == max {
        let mut shift = 0;
        loop {
            let (&b, after) = rest.split_first().ok_or(HpackError::Integer)?;
            rest = after;
            if shift > 21 {
                return Err(HpackError::Integer);
            }
            value += usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    *block = rest;
    Ok(value)
}

/// A string literal (RFC 7541 §5.2): borrowed when sent raw, decoded when
/// Huffman-coded.
fn string<'b>(block: &mut &'b [u8]) -> Result<Cow<'b, [u8]>, HpackError> {
    let huffman = block.first().is_some_and(|b| b & 0x80 != 0);
    let len = integer(block, 7)?;
    if len > block.len() {
        return Err(HpackError::Truncated(len));
    }
    let (octets, rest) = block.split_at(len);
    *block = rest;
    if !huffman {
        return Ok(Cow::Borrowed(octets));
    }
    let mut out = Vec::with_capacity(len * 8 / 5);
    huffman::decode(octets, &mut out)?;
    Ok(Cow::Owned(out))
}

/// The static table (RFC 7541 Appendix A), index 1 first.
static STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];
