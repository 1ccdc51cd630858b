//! One key-value-with-compare-and-swap trait and its backends
