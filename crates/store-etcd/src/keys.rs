//! Where trellis keys live in etcd's flat, byte-ordered key space.
//!
//! A store with namespace `ns` keeps the trellis key `a/b` under the etcd key
//! `ns/a/b`; without a namespace, under `a/b`. The trellis prefix `a/b` (a
//! subtree: `a/b` itself and `a/b/…`, never the sibling `a/bc`) is asked of
//! etcd as the byte range `[ns/a/b, ns/a/b0)`: `0` is the byte after `/`, so
//! the range holds the subtree, and the only other keys in it are the
//! siblings that continue with a byte below `/` (`a/b-1`, `a/b.x`), which
//! [`Namespace::trellis_key`]'s callers drop with [`key_matches`].

use trellis_store::{Error, Op, check_key, key_matches};

/// etcd's default limit of operations per transaction (`--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// The etcd key prefix of one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Namespace {
    /// `ns/`, or empty for no namespace.
    root: String,
}

impl Namespace {
    /// The namespace `prefix` (a key-shaped path, see [`check_key`]), or the
    /// whole of etcd for `None`.
    pub(crate) fn new(prefix: Option<&str>) -> Result<Self, Error> {
        let root = match prefix {
            None => String::new(),
            Some(p) => {
                check_key(p)?;
                format!("{p}/")
            }
        };
        Ok(Self { root })
    }

    /// The etcd key of the trellis key `key`.
    pub(crate) fn key(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.root.len() + key.len());
        k.extend_from_slice(self.root.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    /// The etcd range `[key, range_end)` holding the subtree `prefix`
    /// (plus siblings to drop, see the module docs).
    pub(crate) fn range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let dir = prefix.strip_suffix('/').unwrap_or(prefix);
        if dir.is_empty() {
            return match self.root.as_bytes().split_last() {
                // `ns/` .. `ns0`: everything in the namespace.
                Some((_, head)) => (self.root.clone().into_bytes(), [head, b"0"].concat()),
                // etcd's "every key": from `\0`, with range_end `\0`.
                None => (vec![0], vec![0]),
            };
        }
        let start = self.key(dir);
        let end = [start.as_slice(), b"0"].concat();
        (start, end)
    }

    /// The trellis key of an etcd key, if it lies in this namespace and is
    /// UTF-8 (keys written by others without a namespace may not be).
    pub(crate) fn trellis_key(&self, etcd_key: &[u8]) -> Option<String> {
        let rest = etcd_key.strip_prefix(self.root.as_bytes())?;
        String::from_utf8(rest.to_vec()).ok()
    }

    /// The trellis key of an etcd key if it lies in the subtree `prefix`.
    pub(crate) fn matching(&self, prefix: &str, etcd_key: &[u8]) -> Option<String> {
        self.trellis_key(etcd_key)
            .filter(|k| key_matches(prefix, k))
    }
}

/// Checks a transaction before it is sent: every key well-formed, none twice
/// (as every backend refuses), and no more ops than etcd takes in one `Txn`.
pub(crate) fn check_ops(ops: &[Op]) -> Result<(), Error> {
    let mut seen = std::collections::HashSet::with_capacity(ops.len());
    for op in ops {
        check_key(op.key())?;
        if !seen.insert(op.key()) {
            return Err(Error::InvalidKey {
                key: op.key().to_owned(),
                reason: "key appears twice in one transaction",
            });
        }
    }
    if ops.len() > MAX_TXN_OPS {
        return Err(Error::backend(
            ops[0].key(),
            format!(
                "a transaction of {} ops is over etcd's limit of {MAX_TXN_OPS} ops \
                 per transaction (--max-txn-ops); split it",
                ops.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_store::Expect;

    fn ns(p: &str) -> Namespace {
        Namespace::new(Some(p)).unwrap()
    }

    #[test]
    fn keys_go_under_the_namespace() {
        assert_eq!(ns("t/1").key("a/b"), b"t/1/a/b");
        assert_eq!(Namespace::new(None).unwrap().key("a/b"), b"a/b");
        assert_eq!(ns("t").trellis_key(b"t/a/b").as_deref(), Some("a/b"));
        assert_eq!(ns("t").trellis_key(b"u/a/b"), None);
        assert!(Namespace::new(Some("bad/")).is_err());
        assert!(Namespace::new(Some("")).is_err());
    }

    #[test]
    fn a_prefix_is_a_byte_range_holding_its_subtree() {
        let n = ns("t");
        assert_eq!(n.range("a/b"), (b"t/a/b".to_vec(), b"t/a/b0".to_vec()));
        assert_eq!(n.range("a/b/"), (b"t/a/b".to_vec(), b"t/a/b0".to_vec()));
        assert_eq!(n.range(""), (b"t/".to_vec(), b"t0".to_vec()));
        let all = Namespace::new(None).unwrap();
        assert_eq!(all.range(""), (vec![0], vec![0]));
        assert_eq!(all.range("a"), (b"a".to_vec(), b"a0".to_vec()));
    }

    #[test]
    fn siblings_inside_the_range_are_dropped() {
        let n = ns("t");
        let (start, end) = n.range("a/b");
        for (key, wanted) in [
            (&b"t/a/b"[..], true),
            (b"t/a/b/c", true),
            (b"t/a/b-1", false),
            (b"t/a/b.x", false),
        ] {
            assert!(start.as_slice() <= key && key < end.as_slice(), "{key:?}");
            assert_eq!(n.matching("a/b", key).is_some(), wanted, "{key:?}");
        }
        assert!(b"t/a/bc".as_slice() >= end.as_slice(), "a/bc is outside");
    }

    #[test]
    fn transactions_are_checked_before_sending() {
        let twice = [
            Op::put("a", vec![], Expect::Any),
            Op::delete("a", Expect::Any),
        ];
        assert!(matches!(check_ops(&twice), Err(Error::InvalidKey { .. })));
        let many: Vec<_> = (0..=MAX_TXN_OPS)
            .map(|i| Op::put(format!("k/{i}"), vec![], Expect::Any))
            .collect();
        let err = check_ops(&many).unwrap_err().to_string();
        assert!(
            err.contains("129 ops") && err.contains("limit of 128"),
            "{err}"
        );
        check_ops(&many[..MAX_TXN_OPS]).unwrap();
    }
}
