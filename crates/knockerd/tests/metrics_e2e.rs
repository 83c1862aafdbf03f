//! Metrics without a listener, end to end: the real knockerd in a network namespace counts
//! mallory's failed attempt, alice's grant, its refresh and its expiry, and a table restore
//! after `nft flush ruleset`; it writes them to `[daemon] metrics_file` and to its state
//! directory's `metrics.prom`, both of which Prometheus' own `promtool check metrics` accepts;
//! `knockerd status --metrics` prints them; and an idle daemon writes nothing. Needs root,
//! iproute2, nftables and promtool (scripts/test.sh fetches it from Debian's `prometheus`
//! package and names it in KNOCKER_PROMTOOL).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Prometheus' own checker: KNOCKER_PROMTOOL, else `promtool` on PATH.
fn promtool() -> PathBuf {
    if let Some(p) = std::env::var_os("KNOCKER_PROMTOOL") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "KNOCKER_PROMTOOL={} is not a file",
            p.display()
        );
        return p;
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("promtool"))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    on_path.unwrap_or_else(|| {
        panic!(
            "e2e prerequisite missing: promtool (scripts/test.sh extracts it from Debian's \
             prometheus package and sets KNOCKER_PROMTOOL; KNOCKER_SKIP_E2E=1 skips on purpose)"
        )
    })
}

/// `promtool check metrics` on `text`: its verdict (lint problems count as failures).
fn promtool_check(text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// The value of the sample `series` (name and labels, as written) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until `file` holds every (series, value) of `want`; the last text read.
fn wait_for_samples(file: &Path, want: &[(&str, f64)], limit: Duration) -> String {
    let end = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if want.iter().all(|(s, v)| sample(&text, s) == Some(*v)) || Instant::now() > end {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_samples(text: &str, want: &[(&str, f64)], log: &str) {
    for (series, value) in want {
        assert_eq!(
            sample(text, series),
            Some(*value),
            "{series} in\n{text}\nlog:\n{log}"
        );
    }
}

#[test]
fn every_count_reaches_the_textfile_and_status_and_promtool_accepts_it() {
    if !e2e(&[]) {
        return;
    }
    // checked before anything starts, so a missing promtool fails at once
    promtool_check("# HELP t_total t\n# TYPE t_total counter\nt_total 1\n")
        .expect("promtool works");
    let textfile_dir =
        std::env::temp_dir().join(format!("knocker-metrics-textfile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&textfile_dir);
    std::fs::create_dir_all(&textfile_dir).expect("dir");
    let textfile = textfile_dir.join("knockerd.prom");
    let w = World::new(
        "metrics",
        &door_config(
            &format!("metrics_file = {:?}", textfile.display().to_string()),
            &format!("sequence = {ALICE_SEQ:?}\nopen_for = 3\n"),
        ),
    );
    let in_state = w.state_dir().join("metrics.prom");

    // written at the start: every door listed, at zero
    let zero = [
        ("knockerd_grants_total{door=\"ssh\"}", 0.0),
        ("knockerd_knocks_seen_total{door=\"ssh\"}", 0.0),
        ("knockerd_table_restores_total", 0.0),
    ];
    let text = wait_for_samples(&textfile, &zero, Duration::from_secs(3));
    assert_samples(&text, &zero, &w.daemon.log());

    // mallory: the first knock right, then another of the door's ports: a failed attempt
    w.knock(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, &["7000", "8000"]);
    // alice: a grant, then the same knock again while it is open: a refresh
    w.alice_knocks_and_is_granted();
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &ALICE_SEQ);
    let counted = [
        ("knockerd_knocks_seen_total{door=\"ssh\"}", 8.0),
        (
            "knockerd_refused_total{door=\"ssh\",reason=\"wrong_port\"}",
            1.0,
        ),
        ("knockerd_grants_total{door=\"ssh\"}", 1.0),
        ("knockerd_refreshes_total{door=\"ssh\"}", 1.0),
        ("knockerd_grants_open", 1.0),
        ("knockerd_source_packets_total{kind=\"knock\"}", 8.0),
    ];
    let text = wait_for_samples(&textfile, &counted, Duration::from_secs(5));
    assert_samples(&text, &counted, &w.daemon.log());

    // the grant runs out (open_for = 3 from the refresh), and something flushes the ruleset
    let ended = [
        ("knockerd_expiries_total{door=\"ssh\"}", 1.0),
        ("knockerd_grants_open", 0.0),
    ];
    let text = wait_for_samples(&textfile, &ended, Duration::from_secs(8));
    assert_samples(&text, &ended, &w.daemon.log());
    w.lab
        .server
        .exec("nft", &["flush", "ruleset"])
        .expect("nft flush ruleset");
    let restored = [("knockerd_table_restores_total", 1.0)];
    let text = wait_for_samples(&textfile, &restored, Duration::from_secs(5));
    assert_samples(&text, &restored, &w.daemon.log());
    assert_samples(
        &text,
        &[
            ("knockerd_worker_restarts_total", 0.0),
            ("knockerd_source_overruns_total", 0.0),
            ("knockerd_stop_commands_total{door=\"ssh\"}", 0.0),
        ],
        &w.daemon.log(),
    );
    assert!(
        sample(&text, "knockerd_start_time_seconds").is_some_and(|t| t > 1.7e9),
        "{text}"
    );

    // Prometheus' own checker accepts the file, lint and all
    if let Err(e) = promtool_check(&text) {
        panic!("promtool check metrics refused the file:\n{e}\n{text}");
    }

    // idle: no write (the file keeps its inode and its time), and both files say the same
    std::thread::sleep(Duration::from_millis(1500));
    let before = std::fs::metadata(&textfile).expect("metadata");
    std::thread::sleep(Duration::from_millis(2500));
    let after = std::fs::metadata(&textfile).expect("metadata");
    assert_eq!(
        (before.ino(), before.mtime_nsec(), before.mtime()),
        (after.ino(), after.mtime_nsec(), after.mtime()),
        "an idle daemon writes nothing"
    );
    let text = std::fs::read_to_string(&textfile).expect("textfile");
    assert_eq!(
        std::fs::read_to_string(&in_state).expect("state dir's metrics.prom"),
        text
    );
    assert_eq!(after.mode() & 0o777, 0o644, "a textfile collector reads it");
    let left: Vec<_> = std::fs::read_dir(&textfile_dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("knockerd.prom")],
        "no temporary file left"
    );

    // `knockerd status --metrics` prints the same, and exits 0 while knockerd runs
    let out = Command::new(env!("CARGO_BIN_EXE_knockerd"))
        .args(["status", "--metrics", "--state-dir"])
        .arg(w.state_dir())
        .output()
        .expect("knockerd status --metrics");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), text);

    let _ = std::fs::remove_dir_all(&textfile_dir);
    w.finish();
}
