//! knockerd: sources, gatekeeper and firewall backends around `knocker-engine`.
pub mod nflog;
pub mod nftset;
