//! trellis-grpc over a real socket: the generated client talks to the service
//! on a unix socket in a tempdir.
//!
//! Two tiers (see `util`):
//! - **Unprivileged** (plain `cargo test`, any user): the agent runs on
//!   trellis-fake's in-memory kernel. The edge is logic — validation,
//!   conversion, status codes, "a refused request changes nothing" — so the
//!   bad-input table, the round trip, health, reflection and the
//!   `:authority` bytes are proven here.
//! - **Privileged** (`--features privileged`, as root): the agent's real
//!   backends aimed at a namespace of the test's own (never the machine's).
//!   The round trip runs again through real namespaces, and the netns paths
//!   only the kernel tells apart (a file, a mount namespace, the host's).

mod authority;
mod bad_input;
mod cases;
mod happy;
mod util;
mod watch;
