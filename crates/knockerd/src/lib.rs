//! knockerd: sources, gatekeeper and firewall backends around `knocker-engine`.
//!
//! The split follows DESIGN.md: `nflog` sees knocks, `knocker_engine` decides, `gatekeeper`
//! validates and applies grants through `nftset`, and `ruleset` owns the `inet knocker` table.
pub mod config;
pub mod daemon;
pub mod demo;
pub mod fwknop_conf;
pub mod fwknop_doors;
pub mod gatekeeper;
pub mod knockd;
pub mod lab;
pub mod ledger;
pub mod nflog;
pub mod nftset;
pub mod onetime;
pub mod ruleset;
