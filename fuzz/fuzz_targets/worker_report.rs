//! Fuzzes the root process's reading of the packet worker's reports: one JSON line each, from a
//! process that reads hostile packets and so is not trusted. Must never panic; whatever parses
//! must serialize back to something that parses to the same report.
#![no_main]

use knockerd::privsep::Report;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > knockerd::privsep::MAX_REPORT_BYTES {
        return;
    }
    if let Ok(report) = serde_json::from_slice::<Report>(data) {
        let again = serde_json::to_vec(&report).expect("a report serializes");
        assert_eq!(
            serde_json::from_slice::<Report>(&again).expect("and parses back"),
            report
        );
    }
});
