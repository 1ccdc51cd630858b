//! The agent on trellis-fake's in-memory kernel: whole paths (attach, detach,
//! undo on failure) checked against the state they leave, without root.
//! The privileged tests in real namespaces remain the proof against the
//! kernel; these prove the logic.

mod attach;
mod export;
mod gc;
mod mac;
mod membership;
mod util;
