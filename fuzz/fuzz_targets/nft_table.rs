//! Fuzzes the root process's readings of `nft -j list table inet knocker`
//! (`knockerd::ruleset`): `health_of` (the live table against the configuration's, which decides
//! whether the table is restored), `grants_of` and `counted_grants_of` (the grants the kernel
//! holds, which `status` prints and a start adopts). nft's output is not hostile, but another
//! program may have put anything in the table. Must never panic; every grant that reads as one
//! names an address and a service that prints as it parses.
#![no_main]

use std::sync::OnceLock;

use knockerd::ruleset::{self, TableHealth, TableSpec};
use libfuzzer_sys::fuzz_target;

/// A table with every kind of chain: knock ports, a protected service, a forwarded one sent on
/// to an inner host with a new source, counted connections and a widened grant.
fn spec() -> &'static TableSpec {
    static SPEC: OnceLock<TableSpec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let config = knockerd::config::native::parse(
            std::path::Path::new("knockerd.toml"),
            "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nopen_for = 30\n\
             connections = 2\n\
             [door.wide]\nsequence = [\"7100\", \"9100\", \"8100\"]\nopen = [\"443\"]\nopen_for = 30\n\
             grant_prefix = 24\n\
             [door.inner]\nsequence = [\"7200\", \"9200\", \"8200\"]\nopen = [\"2222\"]\nopen_for = 30\n\
             nat = \"10.0.0.5:22\"\nnat_source = \"masquerade\"\n",
        )
        .expect("the fuzz target's own configuration");
        TableSpec::from_config(&config)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(TableHealth::Intact) = ruleset::health_of(json, spec()) {
        // a table found intact was read: its grants are too
        assert!(ruleset::grants_of(json).is_ok());
        assert!(ruleset::counted_grants_of(json).is_ok());
    }
    for grants in [ruleset::grants_of(json), ruleset::counted_grants_of(json)] {
        for g in grants.into_iter().flatten() {
            if let Some((addr, service, _left)) = g.parsed() {
                assert_eq!(Some(addr), g.addr());
                let again: knocker_engine::Service =
                    service.to_string().parse().expect("a service prints as it parses");
                assert_eq!(again, service, "{g:?}");
            }
        }
    }
});
