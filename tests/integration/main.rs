//! fetchfs's integration tests, one crate so the shared harness is compiled
//! once: `cargo test --test integration [MODULE::NAME]`.
//!
//! Most modules mount the real daemon on a real mountpoint against a
//! scriptable HTTP origin on 127.0.0.1 ([`common`]); `core_races` drives the
//! cache core's API directly, with many tasks and many repetitions, against
//! the same origin. Every test builds its own origin, mountpoint and cache
//! dir, and takes all of it down again, also when it fails.

mod common;

mod bounded_time;
mod caching_rules;
mod clients;
mod commands;
mod concurrency;
mod control;
mod core_races;
mod crash;
mod dedup;
mod errors;
mod events;
mod eviction;
mod faults;
mod fleet;
mod full_disk;
mod lifecycle;
mod listing;
mod logs;
mod metrics;
mod namespace;
mod parts;
mod passthrough;
mod persistence;
mod prefetch;
mod proxy;
mod read;
mod readonly;
mod revalidation;
mod rfc_corners;
mod security;
mod sizes;
mod soak;
mod stat;
mod stats;
mod systemd;
mod torture;
mod verify;
mod xattrs;
