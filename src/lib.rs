//! fetchfs: a FUSE filesystem in which paths map to URLs.
//!
//! Data flows one way: kernel → [`fs`] → [`cache`] → ([`store`] | [`origin`]) and back.
//! [`namespace`] maps mount paths to URLs, [`control`] serves the `.fetchfs/` folder,
//! [`config`] holds the validated settings and [`cli`] is the binary's edge.

pub mod cache;
pub mod cli;
pub mod config;
pub mod control;
pub mod fs;
pub mod namespace;
pub mod origin;
pub mod store;
