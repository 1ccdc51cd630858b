//! trellis-grpc over a real socket: the generated client talks to the service
//! on a unix socket in a tempdir, the agent's kernel backends aimed at a
//! namespace of the test's own (never the machine's).

mod authority;
mod bad_input;
mod cases;
mod happy;
mod util;
