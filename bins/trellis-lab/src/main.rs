//! The trellis lab.
fn main() {}
