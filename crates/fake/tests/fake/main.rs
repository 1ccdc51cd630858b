//! The fake kernel's own tests: it is logic, so it is tested like logic —
//! through the traits it implements, as the agent will use it.

mod faults;
mod links;
mod nat;
mod routes;
mod util;
