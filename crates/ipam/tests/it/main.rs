//! Integration tests of trellis-ipam over real stores (one test binary).

mod alloc;
mod granted;
mod pools;
mod props;
mod race;
mod release;
mod routed;
mod util;
mod with;
