//! The HPACK Huffman code (RFC 7541 §5.2, Appendix B), decoded canonically.
//!
//! The code of Appendix B is canonical: codes of one length are consecutive
//! and ordered by symbol, and each length's first code follows from the
//! shorter ones. So the code lengths alone define it, and decoding needs
//! three small arrays built at compile time instead of the full code table
//! or a state machine (the unit tests check the result against the RFC's
//! examples and the code's completeness).

/// Code length in bits of each symbol; 256 is EOS (RFC 7541 Appendix B).
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

const MAX_LEN: usize = 30;
const EOS: u16 = 256;

/// Why a Huffman-coded string does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    /// EOS inside a string.
    #[error("EOS inside a Huffman-coded string")]
    Eos,
    /// Padding longer than 7 bits, or not the most significant bits of EOS.
    #[error("bad padding after a Huffman-coded string")]
    Padding,
}

/// The canonical code by length: `first[l]` is the first code of length
/// `l`, `count[l]` how many there are, and their symbols start at
/// `symbols[offset[l]]`.
struct Canonical {
    first: [u32; MAX_LEN + 1],
    count: [u32; MAX_LEN + 1],
    offset: [usize; MAX_LEN + 1],
    symbols: [u16; 257],
}

const CODE: Canonical = canonical();

const fn canonical() -> Canonical {
    let mut c = Canonical {
        first: [0; MAX_LEN + 1],
        count: [0; MAX_LEN + 1],
        offset: [0; MAX_LEN + 1],
        symbols: [0; 257],
    };
    let mut s = 0;
    while s < LENGTHS.len() {
        c.count[LENGTHS[s] as usize] += 1;
        s += 1;
    }
    let mut len = 1;
    while len <= MAX_LEN {
        c.first[len] = (c.first[len - 1] + c.count[len - 1]) << 1;
        c.offset[len] = c.offset[len - 1] + c.count[len - 1] as usize;
        len += 1;
    }
    let mut next = c.offset;
    let mut s = 0;
    while s < LENGTHS.len() {
        let len = LENGTHS[s] as usize;
        c.symbols[next[len]] = s as u16;
        next[len] += 1;
        s += 1;
    }
    c
}

/// Appends the decoding of `input` to `out`.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let (mut code, mut len) = (0u32, 0usize);
    for &byte in input {
        for bit in (0..8).rev() {
            code = code << 1 | u32::from(byte >> bit & 1);
            len += 1;
            // Canonical: a prefix of a longer code is above every code of
            // its own length, so this is a code iff it falls in the range.
            let i = code.wrapping_sub(CODE.first[len]);
            if i < CODE.count[len] {
                match CODE.symbols[CODE.offset[len] + i as usize] {
                    EOS => return Err(HuffmanError::Eos),
                    sym => out.push(sym as u8),
                }
                (code, len) = (0, 0);
            }
        }
    }
    // At most 7 bits of padding, all ones (the start of EOS).
    if len > 7 || code != (1 << len) - 1 {
        return Err(HuffmanError::Padding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_is_complete_and_eos_is_thirty_ones() {
        // Kraft's sum is exactly 1: every bit string starts with a code.
        let kraft: u64 = LENGTHS
            .iter()
            .map(|&l| 1u64 << (MAX_LEN - usize::from(l)))
            .sum();
        assert_eq!(kraft, 1 << MAX_LEN);
        let last = CODE.first[MAX_LEN] + CODE.count[MAX_LEN] - 1;
        assert_eq!((last, CODE.symbols[256]), ((1 << 30) - 1, EOS));
    }

    #[test]
    fn decodes_the_rfc_examples() {
        // RFC 7541 C.4.1, C.4.3, C.6.1.
        let cases: [(&[u8], &str); 4] = [
            (
                &[
                    0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
                ],
                "www.example.com",
            ),
            (
                &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf],
                "custom-value",
            ),
            (&[0x64, 0x02], "302"),
            (
                &[
                    0xd0, 0x7a, 0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05, 0x95, 0x04,
                    0x0b, 0x81, 0x66, 0xe0, 0x82, 0xa6, 0x2d, 0x1b, 0xff,
                ],
                "Mon, 21 Oct 2013 20:13:21 GMT",
            ),
        ];
        for (input, want) in cases {
            let mut out = Vec::new();
            decode(input, &mut out).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn refuses_eos_and_bad_padding() {
        let mut out = Vec::new();
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff], &mut out),
            Err(HuffmanError::Eos)
        );
        // "0" is 00000 (5 bits): 3 padding bits of zeros are not EOS's.
        assert_eq!(decode(&[0x00], &mut out), Err(HuffmanError::Padding));
        // A whole byte of ones after "0": padding longer than 7 bits.
        assert_eq!(decode(&[0x07, 0xff], &mut out), Err(HuffmanError::Padding));
        out.clear();
        decode(&[0x07], &mut out).unwrap();
        assert_eq!(out, b"0");
    }
}
