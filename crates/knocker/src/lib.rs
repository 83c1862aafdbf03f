//! knocker's client library: everything `knocker` does, without its command line. It sends
//! knocks (compatible with the `knock` client, so knockd and knockerd's sequence doors see what
//! they expect), rotating sequences, encoded knocks, SPA packets (fwknop's and knocker's own) and
//! stealth SYNs, and keeps named profiles and keys. The wire formats are `knocker_wire`'s, the
//! same the daemon checks with.
//!
//! The modules, from the ground up: [`knock`] (sending a port sequence, resolving hosts),
//! [`secrets`] (key and counter files), [`fwknoprc`] (`~/.fwknoprc`), [`syn`] (the stealth SYN
//! builder and its raw socket), [`knockknock`] (knockknock's profile directories and SYN),
//! [`profile`] (the profiles file), [`kinds`] (what each profile
//! kind puts on the wire), [`spa`] (fwknop SPA packets), [`saved`] (knocking a saved profile,
//! whatever its kind), [`connect`] (knock, then relay a connection) and [`proxy`] (a local SOCKS5
//! server that does what `connect` does for each request). Each returns typed
//! errors (its own, or `io::Error` for [`syn`]); every import points down this list.
#![forbid(unsafe_code)]

pub mod connect;
pub mod fwknoprc;
pub mod kinds;
pub mod knock;
pub mod knockknock;
pub mod profile;
pub mod proxy;
pub mod saved;
pub mod secrets;
pub mod spa;
pub mod syn;
