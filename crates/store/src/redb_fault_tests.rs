//! A damaged state file is refused, named, and left byte for byte as it was.

use crate::{Error, Expect, KvStore, RedbStore};
use std::path::Path;

/// A value that makes its page easy to find in the file.
const MARKER: &[u8] = b"trellis-fault-test-marker-0123456789";

/// A store at `path` holding a few records, closed cleanly.
async fn filled(path: &Path) {
    let store = RedbStore::open(path).unwrap();
    for i in 0..20 {
        let value = [MARKER, format!("-{i}").as_bytes()].concat();
        store
            .put_if(&format!("networks/n{i}"), value, Expect::Absent)
            .await
            .unwrap();
    }
}

/// Opens the damaged file at `path`: it must be refused as corrupt, the
/// message naming the file and saying what to do, and the file untouched.
fn assert_refused(path: &Path, what: &str) -> String {
    let before = std::fs::read(path).ok();
    let err = match RedbStore::open(path) {
        Ok(_) => panic!("{what}: the damaged file was opened"),
        Err(e) => e,
    };
    assert!(
        matches!(err, Error::Corrupt { .. }),
        "{what}: not refused as corrupt: {err:?}"
    );
    let msg = err.to_string();
    eprintln!("{what}: {msg}");
    assert!(msg.contains(&path.display().to_string()), "{what}: {msg}");
    assert!(msg.contains("move it aside"), "{what}: {msg}");
    assert_eq!(
        std::fs::read(path).ok(),
        before,
        "{what}: the file was changed"
    );
    msg
}

#[tokio::test]
async fn a_zero_length_file_is_refused_not_made_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trellis.redb");
    filled(&path).await;
    std::fs::File::create(&path).unwrap();
    assert_refused(&path, "zero length");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[tokio::test]
async fn a_garbage_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trellis.redb");
    filled(&path).await;
    let mut bytes = std::fs::read(&path).unwrap();
    for (i, b) in bytes.iter_mut().take(512).enumerate() {
        *b = (i as u8).wrapping_mul(31) ^ 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    assert_refused(&path, "garbage header");
}

#[tokio::test]
async fn a_flipped_byte_in_a_live_record_is_refused_not_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trellis.redb");
    filled(&path).await;
    let mut bytes = std::fs::read(&path).unwrap();
    let mut flipped = 0;
    let mut at = 0;
    while let Some(i) = find(&bytes[at..], MARKER) {
        bytes[at + i + 8] ^= 0xff;
        flipped += 1;
        at += i + MARKER.len();
    }
    assert!(flipped > 0, "the marker is not in the file");
    std::fs::write(&path, &bytes).unwrap();
    assert_refused(&path, "flipped bytes");
}

#[tokio::test]
async fn a_truncated_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trellis.redb");
    filled(&path).await;
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert_refused(&path, "truncated");
}

#[tokio::test]
async fn a_directory_in_its_place_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trellis.redb");
    std::fs::create_dir(&path).unwrap();
    let msg = match RedbStore::open(&path) {
        Ok(_) => panic!("a directory was opened as a store"),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains("not a regular file but a directory"), "{msg}");
    assert!(path.is_dir());
}

#[tokio::test]
async fn a_new_store_is_built_aside_and_a_leftover_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trellis.redb");
    // What a start killed while building the store would leave.
    std::fs::write(dir.path().join("trellis.redb.new"), b"half").unwrap();
    let store = RedbStore::open(&path).unwrap();
    store
        .put_if("a", b"1".to_vec(), Expect::Absent)
        .await
        .unwrap();
    assert!(!dir.path().join("trellis.redb.new").exists());
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.get("a").await.unwrap().unwrap().value, b"1");
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn a_file_open_elsewhere_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trellis.redb");
    let _first = RedbStore::open(&path).unwrap();
    let msg = match RedbStore::open(&path) {
        Ok(_) => panic!("opened twice"),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}
