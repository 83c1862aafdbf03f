//! Child processes with a deadline: run one to its end (its pipes read as they fill, so that a
//! full pipe never stalls it), or stop one that is still running.

use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Runs `cmd` with `input` on its standard input, which is then closed, and returns its output
/// once it exits; panics (after killing it) if it does not within `limit`.
pub fn run(cmd: &mut Command, input: &[u8], limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // A thread, so that a big input cannot block on a full pipe while the output waits.
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
        // dropped: end of input
    });
    let out = wait_output(child, limit, &what);
    writer.join().expect("stdin writer");
    out
}

/// The output of `child` (`what`, for the message) once it exits, its pipes read as it runs;
/// panics (after killing it) with what it wrote to stderr if it does not exit within `limit`.
pub fn wait_output(mut child: Child, limit: Duration, what: &str) -> Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
        thread::spawn(move || {
            let mut all = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut all);
            }
            all
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not exit within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&stderr.join().unwrap_or_default())
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Stops `child` if it still runs: SIGTERM (the daemons exit cleanly on it), and SIGKILL if it
/// has not exited within `grace`. Only this child, by its pid.
pub fn stop(child: &mut Child, grace: Duration) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_runs_to_its_end_with_its_input_and_both_outputs() {
        let out = run(
            Command::new("sh").args(["-c", "tr a-z A-Z; echo done >&2; exit 3"]),
            b"hello\n",
            Duration::from_secs(20),
        );
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"HELLO\n");
        assert_eq!(out.stderr, b"done\n");
    }

    #[test]
    #[should_panic(expected = "did not exit within")]
    fn a_child_past_its_deadline_is_killed_and_said() {
        let child = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::piped())
            .spawn()
            .expect("sleep");
        wait_output(child, Duration::from_millis(100), "sleep 30");
    }

    #[test]
    fn stop_ends_a_child_that_ignores_nothing() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        stop(&mut child, Duration::from_secs(5));
        let status = child.try_wait().expect("wait").expect("exited");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(15)
        );
    }
}
