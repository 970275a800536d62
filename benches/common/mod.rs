//! The integration tests' harness, for the benchmarks: the scriptable
//! origin, the real mount, and the checks (each benchmark is a crate of its
//! own, so each includes this file).

#[allow(dead_code)]
#[path = "../../tests/integration/common/check.rs"]
pub mod check;
#[allow(dead_code)]
#[path = "../../tests/integration/common/mount.rs"]
pub mod mount;
#[allow(dead_code)]
#[path = "../../tests/integration/common/origin.rs"]
pub mod origin;
