//! Fuzzes the root process's reading of the packet worker's reports (`knockerd::privsep`): one
//! JSON line each, from a process that reads hostile packets and so is not trusted, parsed as
//! the parent parses them (the line bound, then the typed fields and their bounds). Must never
//! panic; whatever parses must serialize back to a line that parses to the same report.
#![no_main]

use knockerd::privsep::{parse_report, Report};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = parse_report(data) {
        let again = serde_json::to_vec(&report).expect("a report serializes");
        let back: Report = parse_report(&again).expect("and parses back");
        assert_eq!(back, report);
    }
});
