//! The redb file under a [`RedbStore`](crate::RedbStore): opening it without
//! ever losing a commit, creating it without ever leaving an empty store
//! where a damaged one was, and naming what went wrong.
//!
//! * **An existing file is only ever opened, never initialised.** redb's
//!   `create` puts a new database into an *empty* file, so a state file
//!   truncated to nothing would silently become an empty store. Here a file
//!   that exists is opened with `open`, which refuses it; a new store is made
//!   under a temporary name and renamed into place once it is whole, so an
//!   empty or half-written file at the real name is never one trellis made.
//! * **Every durable commit is a two-phase commit, and every open verifies.**
//!   With one-phase commits redb tells a torn commit from the previous one by
//!   checksums alone, and on open falls back to the previous commit whenever
//!   the newest does not verify — which a crash can legitimately cause, and
//!   which a damaged file causes too: a silent rollback. A two-phase commit
//!   cannot be torn, so redb refuses a newest commit that does not verify
//!   ("primary is corrupted despite 2-phase commit") instead of falling back.
//!   The open also checks the checksum of every page (redb's integrity check
//!   on open), so a file damaged after a clean shutdown is refused instead of
//!   trusted. The cost is one more fsync per durable flush (shared by the
//!   writers of a group commit) and a read of the whole file at start.
//! * **A repair that would roll back is aborted**, whatever the file's
//!   commit flags say (a flipped flag must not turn refusal into rollback).
//!   The crash repair redb needs after an unclean shutdown — rebuilding its
//!   free-page map — goes on. (A file last written by a trellis that made
//!   one-phase commits, torn by a power cut, is refused too, rather than
//!   silently losing its newest commit.)

use crate::Error;
use redb::{Builder, Database, DatabaseError, RepairSession, WriteTransaction};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// A redb failure on the store at `path`, accessing `key`, as an [`Error`]:
/// [`Error::Io`] for the operating system's errors (and for redb's "an
/// earlier write failed", which leaves the database unusable until reopened),
/// [`Error::Corrupt`] for a damaged file, [`Error::Backend`] for the rest.
pub(crate) fn failure(path: &Path, key: &str, e: impl Into<redb::Error>) -> Error {
    match e.into() {
        redb::Error::Io(error) => Error::Io {
            path: path.to_owned(),
            key: key.to_owned(),
            error,
        },
        redb::Error::PreviousIo => Error::Io {
            path: path.to_owned(),
            key: key.to_owned(),
            error: std::io::Error::other(
                "an earlier write to the file failed; it is reopened on the next call",
            ),
        },
        redb::Error::Corrupted(reason) => Error::Corrupt {
            path: path.to_owned(),
            reason,
        },
        // A call on no key (opening the file) names the file.
        e if key.is_empty() => Error::backend(&path.display().to_string(), e),
        e => Error::backend(key, e),
    }
}

/// Whether `e` leaves the open database unusable (redb latches an I/O
/// failure: every later call fails until the file is closed and reopened).
pub(crate) fn poisons(e: &Error) -> bool {
    matches!(e, Error::Io { .. })
}

/// Opens the store file at `path`, creating it if there is none. An
/// existing file that does not open is refused with
/// [`Error::Corrupt`] (or [`Error::Io`]) and left byte for byte as it was.
pub(crate) fn open_or_create(path: &Path) -> Result<Database, Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => open_existing(path),
        Ok(m) => Err(Error::Corrupt {
            path: path.to_owned(),
            reason: format!("it is not a regular file but a {}", kind_of(&m)),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => create_new(path),
        Err(e) => Err(io(path, e)),
    }
}

fn kind_of(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symbolic link"
    } else if t.is_socket() {
        "socket"
    } else if t.is_fifo() {
        "fifo"
    } else {
        "device"
    }
}

fn io(path: &Path, error: std::io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        key: String::new(),
        error,
    }
}

/// Opens an existing store file, verifying every page; refuses to roll
/// back to an older commit.
pub(crate) fn open_existing(path: &Path) -> Result<Database, Error> {
    let mut builder = Builder::new();
    builder
        .set_check_integrity_on_open(true)
        .set_repair_callback(refuse_rollback);
    builder.open(path).map_err(|e| match e {
        DatabaseError::RepairAborted => Error::Corrupt {
            path: path.to_owned(),
            reason: "its newest commit does not verify, and opening it would roll it back"
                .to_owned(),
        },
        // How redb reports a file that is not a database at all ("not a
        // redb database: magic number mismatch").
        DatabaseError::Storage(redb::StorageError::Io(e)) if e.kind() == ErrorKind::InvalidData => {
            Error::Corrupt {
                path: path.to_owned(),
                reason: e.to_string(),
            }
        }
        e => failure(path, "", e),
    })
}

/// redb calls this as its repair goes; at progress 0.3 only when the newest
/// commit failed verification and the repair is about to fall back to the
/// one before it (`Database::do_repair`). The other stages (0.0 to start,
/// 0.6 and 0.9 while rebuilding the free-page map) are what every open after
/// a crash, and every verifying open, goes through.
fn refuse_rollback(session: &mut RepairSession) {
    let p = session.progress();
    if p > 0.0 && p < 0.5 {
        session.abort();
    }
}

/// Makes a new store at `path`: built whole under a temporary name (one
/// left by an earlier attempt is removed), made durable, then renamed into
/// place and the directory synced.
fn create_new(path: &Path) -> Result<Database, Error> {
    let tmp = temporary(path);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {
            tracing::info!(file = %tmp.display(), "removed a store left half-made by an earlier start")
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(&tmp, e)),
    }
    {
        let db = Database::builder()
            .create(&tmp)
            .map_err(|e| failure(&tmp, "", e))?;
        let mut txn = db.begin_write().map_err(|e| failure(&tmp, "", e))?;
        txn.set_two_phase_commit(true);
        txn.commit().map_err(|e| failure(&tmp, "", e))?;
        db.close().map_err(|e| failure(&tmp, "", e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(dir, e))?;
    }
    open_existing(path)
}

/// Where a new store is built before it is renamed to `path`.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".new");
    path.with_file_name(name)
}

/// Commits `txn` durably, as every durable commit of the store is made: two
/// phases (see the module's doc).
pub(crate) fn commit_durable(
    path: &Path,
    key: &str,
    mut txn: WriteTransaction,
) -> Result<(), Error> {
    txn.set_two_phase_commit(true);
    txn.commit().map_err(|e| failure(path, key, e))
}
