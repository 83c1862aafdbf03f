//! knocker's lab: everything the end-to-end tests, the benches and `knockerd demo` need to put
//! real programs on a real network stack, and nothing the daemon itself runs on.
//!
//! - [`netns`]: network namespaces (removed on drop, also on failure or panic), veth pairs and
//!   their addresses, and [`Lab`], the usual server with alice and mallory;
//! - [`send`]: knocks the way knock(1) sends them, TCP connection probes, and the spoofing
//!   sender (raw sockets, any source address);
//! - [`packet`]: the hand-made IPv4/IPv6 TCP and UDP packets the spoofing sender sends;
//! - [`ready`]: the one rule for e2e prerequisites (missing is a loud failure unless
//!   `KNOCKER_SKIP_E2E=1`) and the demo's and benches' preflight;
//! - [`child`]: a child process run to its end with a deadline, and stopping one;
//! - [`log`]: a child's output read line by line, kept, echoed and waited on;
//! - [`dir`]: a scratch directory for a test's files, removed on drop;
//! - [`fwknopd`]: Debian's fwknopd's arguments, its files in a directory of the caller's;
//! - [`kernel_log`]: netfilter logging turned on in every namespace for a test's duration;
//! - [`proxy`]: `knocker proxy` started on a free loopback port, its log waited on.
//!
//! Addresses live only inside the lab's namespaces (10.200.0.0/16, fd00:200::/48): nothing here
//! sends a packet anywhere but between them.
//!
//! Not published, and never a dependency of the daemon's own modules: only knockerd's `demo`
//! (in the binary, not the library) links it.
#![forbid(unsafe_code)]

pub mod child;
pub mod dir;
pub mod fwknopd;
pub mod kernel_log;
pub mod log;
pub mod netns;
pub mod packet;
pub mod proxy;
pub mod ready;
pub mod send;

pub use dir::TempDir;
pub use log::Log;
pub use netns::{assert_removed, link, Lab, Netns};
pub use ready::{e2e, needs, preflight, which};
pub use send::{
    send_knock, send_knock_from, send_raw_ip, send_raw_tcp4, send_raw_udp4, try_connect, Reach,
    ReadyKnock,
};
