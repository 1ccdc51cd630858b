//! The unix socket's life cycle and the state directory's mode.

use crate::util::mode;
use trellisd::fs::{bind_unix, ensure_state_dir, remove_socket};

#[tokio::test]
async fn the_socket_is_created_0600_with_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/trellis/trellisd.sock");
    let listener = bind_unix(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o755);
    let client = tokio::net::UnixStream::connect(&path).await.unwrap();
    let (_server_side, _) = listener.accept().await.unwrap();
    drop(client);
    remove_socket(&path);
    assert!(!path.exists());
    remove_socket(&path); // gone already: fine
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    // A crashed daemon leaves its socket file behind, with nobody listening.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let listener = bind_unix(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    tokio::net::UnixStream::connect(&path).await.unwrap();
    listener.accept().await.unwrap();
}

#[tokio::test]
async fn a_live_socket_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let _other = bind_unix(&path).unwrap();
    let err = format!("{:#}", bind_unix(&path).unwrap_err());
    assert!(err.contains("in use") && err.contains("s.sock"), "{err}");
    assert!(path.exists());
}

#[tokio::test]
async fn a_file_that_is_not_a_socket_is_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("important");
    std::fs::write(&path, "keep me").unwrap();
    let err = format!("{:#}", bind_unix(&path).unwrap_err());
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}

#[test]
fn the_state_directory_is_created_0700() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("var/lib/trellis");
    ensure_state_dir(&state).unwrap();
    assert_eq!(mode(&state), 0o700);
    ensure_state_dir(&state).unwrap(); // existing: kept

    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = format!("{:#}", ensure_state_dir(&file).unwrap_err());
    assert!(err.contains("not a directory"), "{err}");
}
