//! Workspace end-to-end tests. The tests are the `[[test]]` targets of this
//! package; this library is empty on purpose.
