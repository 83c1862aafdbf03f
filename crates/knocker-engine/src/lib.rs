//! knocker's engine: decides, never acts.
//!
//! The engine is sans-IO in the manner of `quinn-proto`: it owns no clock, socket or file. Callers
//! feed it [`Knock`]s together with the current time ([`Engine::handle`]), drain the resulting
//! [`Event`]s ([`Engine::poll_event`]), and call [`Engine::handle_timeout`] at
//! [`Engine::poll_timeout`]. That makes every scenario testable on virtual time and lets the
//! packet-facing process stay free of privilege: a [`Grant`] is a value that the gatekeeper
//! checks and applies elsewhere.
#![forbid(unsafe_code)]

mod encoded;
mod engine;
mod refusal;
mod sequence;
mod spa;
mod table;
mod types;

pub use engine::{
    validate_doors, validate_doors_compat, DoorsError, Engine, EngineConfig, Event,
    DEFAULT_MAX_TRACKED, MAX_CANDIDATES,
};
pub use refusal::{Refusal, MAX_SEEN};
pub use sequence::{
    sequence_rules, Clock, Derive, DoorSpec, Encoded, Failure, Kind, SequenceError, MAX_KNOCKS,
    MAX_OPEN_FOR, MAX_WINDOW, MIN_KNOCKS,
};
pub use spa::{in_net, RateLimit, Spa, SpaDecode, SpaError, SpaPrecheck, SpaRequest};
pub use types::{
    FlagFilter, Grant, Knock, ParseError, Proto, Service, ServiceMap, SpaFacts, TcpFlags,
};
