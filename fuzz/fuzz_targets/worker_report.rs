//! Fuzzes the root process's reading of the packet worker's reports (`knockerd::privsep`): one
//! JSON line each, from a process that reads hostile packets and so is not trusted, parsed as
//! the parent parses them (the line bound, then the typed fields and their bounds) and then
//! checked as the parent checks them against its own configuration (`privsep::check`: a door is
//! its index and its name, both the parent's). Must never panic; whatever parses must serialize
//! back to a line that parses to the same report, and whatever passes the check names a door of
//! the parent's at the index and with the name the report gave.
#![no_main]

use std::sync::OnceLock;

use knockerd::config::{self, Config};
use knockerd::privsep::{check, parse_report, Checked, Report};
use libfuzzer_sys::fuzz_target;

/// The parent's configuration: two doors, `ssh` and `web` (a hostile worker may name either,
/// or any other, at any index).
fn parents_config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        config::native::parse(
            std::path::Path::new("knockerd.toml"),
            "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nopen_for = 30\n\
             [door.web]\nsequence = [\"7100\", \"9100\", \"8100\"]\nopen = [\"443\"]\nopen_for = 30\n",
        )
        .expect("the fuzz target's own configuration")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = parse_report(data) {
        let again = serde_json::to_vec(&report).expect("a report serializes");
        let back: Report = parse_report(&again).expect("and parses back");
        assert_eq!(back, report);
        let config = parents_config();
        let named = |index: usize| config.doors.get(index).map(|d| d.spec.name.as_str());
        match (check(config, &report), &report) {
            (Ok(Checked::Grant(g)), Report::Grant { door, .. }) => {
                assert_eq!(named(g.door), Some(door.name.as_str()));
                assert_eq!(g.door_name, door.name.as_str());
                assert_eq!(u32::try_from(g.door).ok(), Some(door.index));
            }
            (Ok(Checked::Used { index, .. }), Report::Used { door, .. })
            | (
                Ok(Checked::Seen {
                    index: Some(index), ..
                }),
                Report::Seen { door, .. },
            ) => {
                assert_eq!(named(index), Some(door.name.as_str()));
                assert_eq!(u32::try_from(index).ok(), Some(door.index));
            }
            (Ok(Checked::Seen { index: None, .. }), Report::Seen { door, .. }) => {
                assert_ne!(
                    usize::try_from(door.index).ok().and_then(named),
                    Some(door.name.as_str())
                );
            }
            (Ok(Checked::Nothing), Report::Ready | Report::Pong | Report::Batching(_)) | (Err(_), _) => {}
            (checked, report) => panic!("{report:?} checked as {checked:?}"),
        }
    }
});
