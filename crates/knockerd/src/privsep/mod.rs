//! The privilege boundary: everything that crosses from the packet worker, which reads hostile
//! packets with no privilege, to the root parent, which acts on the firewall.
//!
//! knockerd runs as two processes. The parent (root) owns the firewall (the nft table, the
//! allow sets over netlink), the ledger, the door commands and the signals. The worker is the
//! same binary, started by the parent with the hidden `packet-worker` subcommand: it reads the
//! configuration and its keys and binds NFLOG while it is still root, then drops to an
//! unprivileged user (`nobody`: no supplementary groups, no capabilities, no_new_privs, killed
//! when the parent dies) before it reads a single packet. Every parser of hostile input (NFLOG
//! messages, IP headers, encoded knocks, fwknop and knocker SPA datagrams, stealth SYNs) and the
//! engine run there.
//!
//! The worker tells the parent what it decided, one JSON object per line on its standard output
//! ([`Report`]), and answers the parent's pings (a line on its standard input) with a pong, so
//! that a worker that hangs is noticed and replaced. The messages are typed and bounded: what
//! parses is in range (names, services, digests), and anything else is not a report. The parent
//! trusts none of it all the same: it takes the door the report names (its index and its name,
//! [`protocol::DoorRef`]) only when its own copy of the configuration has that door at that
//! index, and the gatekeeper validates every grant (door, services, duration, address)
//! before touching the firewall. A worker that sends anything else, or dies, is replaced; the engine's memory of replays and used steps comes back
//! from the ledger, which the parent sends in a [`Seed`] on the worker's standard input when it
//! starts.
//!
//! - [`protocol`]: the messages, both ways, their framing (JSON lines) and their bounds.
//! - `parent`: the root side's handle on the worker (`Worker`: start, seed, read, ping and
//!   watchdog, stop), and the check of every report against the parent's configuration.
//! - `sandbox`: the worker's Landlock ruleset and seccomp filter, installed once it has dropped
//!   its privileges: the one list of the system calls it may still make.
//! - `pacer`: when the worker's loop pauses before it polls again (under a flood only).
//! - `worker`: the worker's loop ([`run`]), from binding NFLOG and dropping privileges to
//!   reporting the engine's decisions.

pub mod protocol;

mod pacer;
mod parent;
pub(crate) mod sandbox;
mod worker;

pub(crate) use parent::Worker;
pub use parent::{check, Checked, ReportError, WorkerError};
pub use protocol::{parse_report, DoorRef, Report, Seed, MAX_REPORT_BYTES, MAX_SEED_BYTES};
pub use sandbox::{SandboxError, TRIP_ENV};
pub(crate) use worker::{engine_for, poll_timeout};
pub use worker::{run, PrivilegeError, RunError, DEFAULT_USER};
