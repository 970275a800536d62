//! fetchfs: a FUSE filesystem in which paths map to URLs.
//!
//! Data flows one way: kernel → [`fs`] → [`cache`] → ([`store`] | [`origin`]) and back.
//! [`namespace`] maps mount paths to URLs, [`control`] serves the `.fetchfs/` folder,
//! [`config`] holds the validated settings, [`telemetry`] the counters and
//! events every layer reports into, and [`cli`] is the binary's edge.
//!
//! Imports run one way, down: `cli` → `fs` → `control` → `cache` →
//! (`origin`, `store`) → (`namespace`, `config`, `telemetry`).

pub mod cache;
pub mod cli;
pub mod config;
pub mod control;
pub mod fs;
pub mod namespace;
pub mod origin;
pub mod shared;
pub mod store;
pub mod telemetry;
