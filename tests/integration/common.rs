//! Shared harness for the integration tests: a scriptable HTTP origin
//! ([`origin`]), the real daemon on a real mountpoint ([`mount`]), and small
//! helpers for bodies, hashes and errno checks ([`check`]), a small disk
//! to fill up ([`disk`]), a real HTTP proxy ([`proxy`]) and a real Redis
//! ([`redis`]).
//!
//! Every test builds its own origin, mountpoint and cache dir, so tests run in
//! parallel threads without sharing anything.

#![allow(dead_code)]

pub mod check;
pub mod disk;
pub mod mount;
pub mod origin;
pub mod proxy;
pub mod redis;

#[allow(unused_imports)]
pub use check::*;
#[allow(unused_imports)]
pub use disk::SmallDisk;
#[allow(unused_imports)]
pub use mount::{
    Mount, OriginConfig, is_fuse_mounted, mount_options, run_fetchfs, run_with_timeout,
};
#[allow(unused_imports)]
pub use origin::{Cut, Listing, Origin, Request, Route};
#[allow(unused_imports)]
pub use proxy::TinyProxy;
#[allow(unused_imports)]
pub use redis::Redis;
