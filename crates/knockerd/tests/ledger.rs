//! The ledger across processes: a daemon killed with SIGKILL in the middle of its appends (and
//! compactions) loses nothing it acknowledged, its lock dies with it, and a second process is
//! refused while it lives.
//!
//! The child is this test binary run again with `KNOCKER_LEDGER_CHILD` set to the ledger path:
//! it appends until it is killed and prints `ack <n>` after each append returned.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use knockerd::ledger::{Ledger, LedgerError, Options, Record};

const CHILD_ENV: &str = "KNOCKER_LEDGER_CHILD";

fn options() -> Options {
    Options {
        max_seen: 50,
        // small, so that the kill also lands in compactions
        compact_min_records: 40,
        ..Options::default()
    }
}

fn addr(n: u64) -> IpAddr {
    IpAddr::from([10, 0, (n / 250) as u8, (n % 250) as u8 + 1])
}

/// The child's side of `kill_9_loses_nothing_acknowledged`: the same test binary, started with
/// [`CHILD_ENV`] naming the ledger, appends until it is killed (it is not a test of its own, so
/// it never shows as one that passed or was skipped).
fn child_appender(path: &str) -> ! {
    let (mut ledger, _) = Ledger::open(Path::new(path), 1000, options()).expect("child open");
    for n in 1u64.. {
        // what a gatekeeper writes for one grant: the used counter first, then the stop
        let seqs = ledger
            .append_batch(
                1000 + n,
                &[
                    Record::Used {
                        door: "vault".into(),
                        key: "hotp".into(),
                        value: n,
                    },
                    Record::StopPending {
                        door: "vault".into(),
                        addr: addr(n),
                        command: vec!["/bin/true".into()],
                        due_unix: 5000 + n,
                    },
                    Record::Seen {
                        digest: format!("digest-{n}"),
                        until_unix: 2000 + n,
                    },
                ],
            )
            .expect("append");
        // most stops are done again, so most of the journal dies and compactions happen
        if n % 5 != 0 {
            ledger
                .append(1000 + n, Record::StopDone { id: seqs.start + 1 })
                .expect("done");
        }
        println!("ack {n}");
    }
    unreachable!("the child appends until it is killed")
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child_appender(&path);
    }
    let dir = knocker_lab::TempDir::new("ledger-kill");
    let path = dir.0.join("state/ledger.jsonl");

    for round in 0..3u64 {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "kill_9_loses_nothing_acknowledged",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // let it run into a few compactions, then kill it where it stands
        let want = 150 + 37 * round;
        let mut acked = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked < want && Instant::now() < deadline {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(n) = l.strip_prefix("ack ") {
                        acked = n.parse().expect("number");
                    }
                }
                _ => break,
            }
        }
        assert!(acked >= want, "the child acknowledged only {acked}");
        match Ledger::open(&path, 1000, options()) {
            Err(LedgerError::Locked(p)) => assert_eq!(p, path),
            other => panic!("a second process must be refused, got {other:?}"),
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        // whatever the child printed before the kill was acknowledged
        for l in lines.map_while(Result::ok) {
            if let Some(n) = l.strip_prefix("ack ") {
                acked = n.parse().expect("number");
            }
        }

        let (ledger, _) = Ledger::open(&path, 1000, options()).expect("reopen after kill");
        let state = ledger.state();
        let used = state.used("vault", "hotp").expect("used");
        assert!(
            used >= acked,
            "round {round}: used {used} < acknowledged {acked}"
        );
        // every stop acknowledged as pending is still pending (multiples of 5), in due order
        let stops = state.pending_stops();
        for n in (5..=acked).step_by(5) {
            assert!(
                stops
                    .iter()
                    .any(|s| s.addr == addr(n) && s.due_unix == 5000 + n),
                "round {round}: the stop for grant {n} was lost"
            );
        }
        assert!(stops.windows(2).all(|w| w[0].due_unix <= w[1].due_unix));
        assert!(state.seen_all().count() <= 50);
        assert!(state.seen(&format!("digest-{used}")).is_some());
        assert!(!knockerd::ledger::tmp_path(&path).exists());
        // the child compacted as it went: the file holds far fewer than the 4 records per grant
        eprintln!("round {round}: acked {acked}, {} records", ledger.records());
        assert!(ledger.records() < 2 * acked, "{} records", ledger.records());
        drop(ledger);
    }
}
