//! `knockerd replay FILE.pcap`: the configuration's doors judge recorded packets, on the
//! packets' own time, and every decision is printed; nothing is granted.
//!
//! The engine takes time as an argument, so a recording replays as it happened: a record's
//! capture time is a base [`Instant`] plus its offset from the first record (never going back,
//! should the file's times), and the wall clock (TOTP steps, SPA ages, the replay memory) is the
//! record's own Unix time. Packets go through [`Watch`], so the doors see what knockerd's table
//! would have logged; the engine starts empty (no ledger is read: a replay judges the recording
//! on its own) and keeps its memory for the whole file, so an SPA packet captured twice is
//! refused the second time as it would be live.
//!
//! Each event is one line on the output, its fields in a fixed order (see [`line`]):
//!
//! ```text
//! t=1764686703.120211 grant door=ssh src=10.200.1.2 open=tcp/22 for=30s
//! t=1764686709.009348 refuse door=spa src=10.200.1.2 reason="replayed: this exact packet was already used"
//! ```
//!
//! Nothing here touches the firewall, the ledger or a command, or needs root (only the files the
//! configuration names must be readable).

use std::io::{Read, Write};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use knocker_engine::Event;

use super::frame::{self, Seen, Watch};
use super::pcap::{PcapError, PcapReader};
use crate::config::{fmt_duration, Config};

/// What a replay counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records read (an unreadable one too).
    pub records: u64,
    /// Packets some rule of knockerd's table would have logged.
    pub watched: u64,
    /// Records that were read but were no watched packet (another port, not IP, sent by this host).
    pub ignored: u64,
    /// Records that could not be read (too large, an unknown link type): each was reported.
    pub errors: u64,
    pub grants: u64,
    /// Refused requests and failed sequence attempts.
    pub refusals: u64,
    /// Sources part-way through a sequence when the recording ended.
    pub in_progress: u64,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Doors(#[from] knocker_engine::DoorsError),
    #[error(transparent)]
    File(#[from] PcapError),
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
}

/// Replays a capture (pcap or pcapng, from `input`) through `config`'s doors, one line per
/// event to `out`. A record that cannot be read is passed to `record_error` (its number from
/// 1, and why) and skipped; an error in the file's structure stops the replay, after what was
/// read before it was judged and printed.
pub fn replay(
    config: &Config,
    input: impl Read,
    out: &mut impl Write,
    record_error: &mut dyn FnMut(u64, &PcapError),
) -> Result<ReplayStats, ReplayError> {
    let mut engine = crate::privsep::engine_for(config)?;
    let watch = Watch::from_config(config);
    let mut reader = PcapReader::new(input)?;
    let mut stats = ReplayStats::default();
    let base = Instant::now();
    let mut first: Option<Duration> = None;
    let mut now = base;
    let mut fatal = None;
    while let Some(record) = reader.next() {
        stats.records += 1;
        let record = match record {
            Ok(r) => r,
            Err(e @ PcapError::Record(_)) => {
                stats.errors += 1;
                record_error(stats.records, &e);
                continue;
            }
            Err(e) => {
                fatal = Some(e);
                break;
            }
        };
        let at = Duration::new(record.secs, record.nanos);
        let since = at.saturating_sub(*first.get_or_insert(at));
        now = now.max(base + since);
        let stamp = (record.secs, record.nanos);
        engine.set_wall_clock(record.secs);
        engine.handle_timeout(now);
        drain(&mut engine, stamp, out, &mut stats)?;
        match frame::l3(record.link, record.data).and_then(|p| watch.classify(p)) {
            Some(Seen::Knock(k)) => {
                stats.watched += 1;
                engine.handle(now, &k);
            }
            Some(Seen::Datagram(d)) => {
                stats.watched += 1;
                engine.handle_datagram(now, &d.knock, &d.payload);
            }
            None => stats.ignored += 1,
        }
        drain(&mut engine, stamp, out, &mut stats)?;
    }
    stats.in_progress = engine.tracked() as u64;
    match fatal {
        Some(e) => {
            out.flush().map_err(ReplayError::Output)?;
            Err(e.into())
        }
        None => Ok(stats),
    }
}

fn drain(
    engine: &mut knocker_engine::Engine,
    stamp: (u64, u32),
    out: &mut impl Write,
    stats: &mut ReplayStats,
) -> Result<(), ReplayError> {
    while let Some(ev) = engine.poll_event() {
        match &ev {
            Event::Grant(_) => stats.grants += 1,
            Event::Refused { .. } | Event::Failed { .. } => stats.refusals += 1,
            _ => {}
        }
        if let Some(l) = line(stamp, &ev) {
            writeln!(out, "{l}").map_err(ReplayError::Output)?;
        }
    }
    Ok(())
}

/// The line printed for an event, or `None` for one that says nothing to an admin (a replay
/// digest remembered). The first field is the record's capture time (`t=` Unix seconds with
/// microseconds), the second what happened: `grant`, `refuse`, `progress`, `reset`, `used`,
/// `exhausted` or `table-full`; then `door=` and `src=`, and what the event says.
pub fn line(stamp: (u64, u32), ev: &Event) -> Option<String> {
    let t = format!("t={}.{:06}", stamp.0, stamp.1 / 1000);
    let who = |door: &str, src: &IpAddr| format!("door={door} src={src}");
    Some(match ev {
        Event::Grant(g) => {
            let open = if g.open.is_empty() {
                "none".to_string()
            } else {
                g.open
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let client = g
                .client
                .as_ref()
                .map(|c| format!(" client={c:?}"))
                .unwrap_or_default();
            format!(
                "{t} grant {} open={open} for={}{client}",
                who(&g.door_name, &g.to),
                fmt_duration(g.duration)
            )
        }
        Event::Refused { door, src, reason } => {
            format!(
                "{t} refuse {} reason={:?}",
                who(door, src),
                reason.to_string()
            )
        }
        Event::Failed { door, src, reason } => {
            format!(
                "{t} refuse {} reason={:?}",
                who(door, src),
                reason.to_string()
            )
        }
        Event::Progress {
            door,
            src,
            matched,
            of,
        } => format!("{t} progress {} knock={matched}/{of}", who(door, src)),
        Event::Reset { door, src } => format!("{t} reset {}", who(door, src)),
        Event::Used { door, tag, .. } => format!("{t} used door={door} tag={tag}"),
        Event::Exhausted { door } => format!("{t} exhausted door={door}"),
        Event::TableFull { capacity } => format!("{t} table-full capacity={capacity}"),
        Event::Seen { .. } => return None,
    })
}

/// `knockerd replay`: loads the configuration, replays `file` to standard output, reports
/// unreadable records and a summary on standard error.
pub fn run(
    source: &crate::config::loader::ConfigFile,
    overrides: &crate::overrides::Overrides,
    file: &std::path::Path,
) -> Result<(), String> {
    let config = crate::overrides::load(source, overrides).map_err(|e| e.to_string())?;
    let input = std::fs::File::open(file)
        .map(std::io::BufReader::new)
        .map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let shown = file.display().to_string();
    let result = replay(&config, input, &mut out, &mut |n, e| {
        eprintln!("knockerd: {shown}: record {n}: {e}");
    });
    out.flush()
        .map_err(|e| format!("cannot write the output: {e}"))?;
    let stats = result.map_err(|e| format!("{shown}: {e}"))?;
    eprintln!(
        "knockerd: {shown}: {} records, {} watched packets, {} ignored, {} unreadable; {} grants, {} refusals, {} sources part-way through a sequence at the end (nothing was changed: a replay only prints)",
        stats.records, stats.watched, stats.ignored, stats.errors, stats.grants, stats.refusals, stats.in_progress
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::pcap::tests::pcap;
    use etherparse::PacketBuilder;

    fn config() -> Config {
        let text = "[door.ssh]\nsequence = [\"8000\", \"7000\", \"9000\"]\nopen = [\"22\"]\nopen_for = \"30s\"\nwindow = \"10s\"\n";
        let dir = crate::TestDir::new("replay");
        std::fs::create_dir_all(&dir.0).expect("dir");
        let path = dir.0.join("k.toml");
        std::fs::write(&path, text).expect("write");
        crate::config::loader::load(&crate::config::loader::ConfigFile::Native(path))
            .expect("config")
            .config
    }

    fn syn(src: [u8; 4], dport: u16) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4(src, [10, 200, 1, 1], 64)
            .tcp(40000, dport, 1, 64240)
            .syn()
            .write(&mut v, b"")
            .expect("write");
        v
    }

    fn run_on(file: &[u8]) -> (String, ReplayStats, Vec<String>) {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        let stats = replay(&config(), file, &mut out, &mut |n, e| {
            errors.push(format!("{n}: {e}"))
        })
        .expect("replay");
        (String::from_utf8(out).expect("utf-8"), stats, errors)
    }

    #[test]
    fn a_sequence_opens_on_the_recorded_time_and_a_slow_one_does_not() {
        let a = syn([10, 200, 1, 2], 8000);
        let b = syn([10, 200, 1, 2], 7000);
        let c = syn([10, 200, 1, 2], 9000);
        let other = syn([10, 200, 1, 2], 443);
        let slow = [10, 200, 1, 3];
        let file = pcap(
            101,
            65535,
            &[
                (1000, 0, &a),
                (1000, 100, &other), // not a knock port: ignored, does not reset
                (1001, 0, &b),
                (1002, 500_000, &c),
                (2000, 0, &syn(slow, 8000)),
                (2000, 1, &syn(slow, 7000)),
                // 20 s later: the 10 s window ran out
                (2020, 0, &syn(slow, 9000)),
            ],
        );
        let (out, stats, errors) = run_on(&file);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(
            out.contains("t=1002.500000 grant door=ssh src=10.200.1.2 open=tcp/22 for=30s\n"),
            "{out}"
        );
        assert!(
            out.contains("refuse door=ssh src=10.200.1.3 reason=\"the window of 10s ran out after 2 of 3 knocks\""),
            "{out}"
        );
        assert_eq!(out.matches(" grant ").count(), 1, "{out}");
        assert_eq!((stats.records, stats.watched, stats.ignored), (7, 6, 1));
        assert_eq!(stats.grants, 1);
    }

    #[test]
    fn unreadable_records_are_reported_and_skipped() {
        let a = syn([10, 200, 1, 2], 8000);
        let huge = vec![0x45; 70_000];
        let file = pcap(
            101,
            262144,
            &[
                (1, 0, &a),
                (1, 1, &huge),
                (1, 2, &syn([10, 200, 1, 2], 7000)),
                (1, 3, &syn([10, 200, 1, 2], 9000)),
            ],
        );
        let (out, stats, errors) = run_on(&file);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("2: "), "{errors:?}");
        assert_eq!(stats.errors, 1);
        assert!(out.contains(" grant door=ssh "), "{out}");
        // a link type knockerd does not read: every record is an error, nothing else happens
        let file = pcap(147, 65535, &[(1, 0, &a)]);
        let (out, stats, errors) = run_on(&file);
        assert!(out.is_empty() && stats.errors == 1, "{out}");
        assert!(errors[0].contains("link type 147"), "{errors:?}");
    }
}
