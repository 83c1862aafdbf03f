//! Where knocks are seen, besides NFLOG ([`crate::nflog`]): each source yields the same
//! `knocker_engine::Knock` (and, for single-packet doors, [`crate::nflog::Datagram`]).
//!
//! - [`frame`]: a captured frame's link layer taken off, and the packets knockerd's table
//!   would log picked out ([`frame::Watch`]), for the packet socket and for replays.
//! - [`pcap`]: the pcap and pcapng reader.
//! - [`replay`]: `knockerd replay FILE`, the doors over a recording.
//! - [`packet`]: the AF_PACKET source, on one interface, with a BPF filter for the watched ports.

pub mod frame;
pub mod packet;
pub mod pcap;
pub mod replay;
