//! Reading nf_tables replies: attributes and set elements.

use crate::elems::Elem;
use crate::wire;

/// Iterates the `(type, value)` attributes of `buf`; the nested and byte-order
/// flag bits are stripped from the type.
pub(crate) fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        let value = &rest[4..len];
        rest = &rest[wire::align(len).min(rest.len())..];
        Some((kind, value))
    })
}

/// The first attribute of type `kind` in `buf`.
fn find(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

/// The `NFTA_DATA_VALUE` inside an `nft_data` nest.
fn data_value(nest: &[u8]) -> Option<Vec<u8>> {
    find(nest, 1).map(<[u8]>::to_vec)
}

/// Decodes the elements of one `NFT_MSG_NEWSETELEM` reply payload.
pub(crate) fn set_elems(payload: &[u8]) -> Vec<Elem> {
    const LIST_ELEMENTS: u16 = 3;
    let Some(list) = find(payload, LIST_ELEMENTS) else {
        return Vec::new();
    };
    attrs(list)
        .filter(|(k, _)| *k == wire::NFTA_LIST_ELEM)
        .filter_map(|(_, el)| {
            Some(Elem {
                key: data_value(find(el, 1)?)?,
                data: find(el, 2).and_then(data_value),
                flags: find(el, 3)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_be_bytes),
                key_end: find(el, 10).and_then(data_value),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Op;

    #[test]
    fn elements_we_encode_decode_back() {
        let e = Elem {
            key: vec![6, 0, 0, 0, 0x1f, 0x91, 0, 0],
            key_end: Some(vec![1, 2, 3, 4]),
            data: Some(vec![10, 0, 0, 1, 0, 80, 0, 0]),
            flags: 1,
        };
        let op = Op::NewElems {
            set: "ports4",
            elems: vec![e.clone(), e.clone()],
            exclusive: true,
        };
        assert_eq!(set_elems(&op.message().attrs.0), vec![e.clone(), e]);
    }
}
