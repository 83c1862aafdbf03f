//! The packet worker: every packet is read and judged by a process with no privilege. In
//! namespaces, with the real knockerd: the worker runs as `nobody` with no capabilities and
//! no_new_privs while the parent stays root; a worker that dies, or hangs, is replaced and
//! knocks keep working; when the parent is killed the worker goes with it; a system call outside its seccomp filter
//! kills it by SIGSYS, and it is replaced; under a fast flood the parent turns the kernel's
//! NFLOG batching on for the worker, and off after it. Needs root, iproute2, nftables.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn nobody() -> String {
    let u = nix::unistd::User::from_name("nobody")
        .expect("lookup")
        .expect("a user nobody");
    u.uid.to_string()
}

#[test]
fn the_packet_worker_holds_no_privilege_and_is_replaced_when_it_dies_or_hangs() {
    if !e2e(&[]) {
        return;
    }
    let w = World::alice_door("privsep", 1);
    let parent = w.daemon.pid();
    let worker = worker_of(parent);
    let nobody = nobody();
    assert_eq!(
        status_field(worker, "Uid"),
        format!("{nobody}\t{nobody}\t{nobody}\t{nobody}"),
        "real, effective, saved and filesystem uid"
    );
    assert_eq!(
        status_field(worker, "Groups"),
        "",
        "no supplementary groups"
    );
    for caps in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(status_field(worker, caps), "0000000000000000", "{caps}");
    }
    assert_eq!(status_field(worker, "NoNewPrivs"), "1");
    assert!(
        status_field(parent, "Uid").starts_with("0\t"),
        "the parent applies grants as root"
    );
    // knocks are read by the worker and applied by the parent
    w.alice_knocks_and_is_granted();
    assert!(
        w.wait_grants(0, Duration::from_secs(4)).is_empty(),
        "expired"
    );

    // the worker dies: the parent replaces it, and the next knock opens
    kill(Pid::from_raw(worker), Signal::SIGKILL).expect("kill the worker");
    w.daemon
        .wait_log("packet worker restarted", Duration::from_secs(5));
    let again = worker_of(parent);
    assert_ne!(again, worker);
    assert_eq!(status_field(again, "CapEff"), "0000000000000000");
    w.alice_knocks_and_is_granted();

    // the worker hangs (stopped): the parent's watchdog notices and replaces it
    assert!(
        w.wait_grants(0, Duration::from_secs(4)).is_empty(),
        "expired"
    );
    kill(Pid::from_raw(again), Signal::SIGSTOP).expect("stop the worker");
    w.daemon
        .wait_log("did not answer a ping", Duration::from_secs(15));
    // the second restart (the log still holds the first)
    let end = Instant::now() + Duration::from_secs(5);
    while w.daemon.log().matches("packet worker restarted").count() < 2 {
        assert!(
            Instant::now() < end,
            "no second restart:\n{}",
            w.daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let third = worker_of(parent);
    assert_ne!(third, again);
    w.alice_knocks_and_is_granted();
    let again = third;

    // the parent is killed: the worker goes with it (and the table stays: fail closed)
    let mut w = w;
    w.daemon.signal(Signal::SIGKILL);
    assert_eq!(
        w.daemon.wait_exit(Duration::from_secs(5)),
        None,
        "knockerd dies by the signal"
    );
    let end = Instant::now() + Duration::from_secs(3);
    while std::path::Path::new(&format!("/proc/{again}")).exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{again}/status")).exists()
            || status_field(again, "State").starts_with('Z'),
        "the worker outlived its parent"
    );
    // fail closed: nobody removed the table, and it still drops the door's service
    let table = w
        .lab
        .server
        .exec("nft", &["list", "table", "inet", "knocker"])
        .expect("the table inet knocker outlives the killed knockerd");
    assert!(
        table
            .lines()
            .any(|l| l.contains(&SERVICE.to_string()) && l.trim_end().ends_with("drop")),
        "the table still protects tcp/{SERVICE}:\n{table}"
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent,
        "with knockerd dead, mallory still gets nothing"
    );
    // alice's last grant ends by the kernel's set timeout, and then she is dropped too
    assert!(
        w.wait_grants(0, Duration::from_secs(4)).is_empty(),
        "alice's grant expires without knockerd"
    );
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent,
        "with knockerd dead and her grant expired, alice is dropped"
    );
    w.finish();
}

/// A new worker numbers a one-time door's lines from those still unused when it starts; the
/// parent must count the same way, or after a replacement it marks a line other than the one
/// knocked (found by the soak: every knock on the door was refused until the parent restarted).
#[test]
fn a_one_time_door_keeps_its_lines_straight_when_the_worker_is_replaced() {
    if !e2e(&[]) {
        return;
    }
    let dir = knocker_lab::TempDir::new("privsep-ot");
    let seq_file = dir.write(
        "privsep-ot.seq",
        " 7000,9000,8000\n 6000,6200,6100\n 5000,5200,5100\n",
    );
    let conf = door_config(
        "",
        &format!(
            "kind = \"one-time\"\none_time_sequences = {:?}\nopen_for = 30\n",
            seq_file.display().to_string()
        ),
    );
    let w = World::new("privsep-ot", &conf);
    w.knock(
        &w.lab.alice,
        Lab::SERVER_FOR_ALICE,
        &["7000", "9000", "8000"],
    );
    assert_eq!(w.wait_grants(1, Duration::from_secs(2)).len(), 1);
    let worker = worker_of(w.daemon.pid());
    kill(Pid::from_raw(worker), Signal::SIGKILL).expect("kill the worker");
    w.daemon
        .wait_log("packet worker restarted", Duration::from_secs(5));
    // the next line, from another source: it opens, and exactly it is marked
    w.knock(
        &w.lab.mallory,
        Lab::SERVER_FOR_MALLORY,
        &["6000", "6200", "6100"],
    );
    let g = w.wait_grants(2, Duration::from_secs(2));
    assert!(
        g.iter().any(|g| g.to == Lab::MALLORY),
        "the second line opens after the worker was replaced: {g:?}\n{}",
        w.daemon.log()
    );
    assert_eq!(
        std::fs::read_to_string(&seq_file).expect("read"),
        "#7000,9000,8000\n#6000,6200,6100\n 5000,5200,5100\n"
    );
    w.finish();
}

/// The worker's sandbox: a system call outside its seccomp filter kills it by SIGSYS (the
/// debug build's test hook makes one, a socket, when the test asks that pid to); the parent
/// says why, replaces it, and stays closed meanwhile: mallory gets nothing, alice's grant from
/// before keeps its kernel timeout, and after the replacement her knock opens again.
#[test]
fn a_system_call_outside_the_workers_filter_kills_it_by_sigsys_and_it_is_replaced() {
    if !e2e(&[]) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = knocker_lab::TempDir::new("privsep-trip");
    // the worker (nobody) looks for its trip file here
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let prefix = dir.join("trip").display().to_string();
    let conf = door_config("", &format!("sequence = {ALICE_SEQ:?}\nopen_for = 6\n"));
    let w = World::start_with("privsep-trip", |lab| {
        Knockerd::start_env(lab, &conf, &[(knockerd::privsep::TRIP_ENV, &prefix)])
    });
    let parent = w.daemon.pid();
    let worker = worker_of(parent);
    assert_eq!(status_field(worker, "Seccomp"), "2", "a seccomp filter");
    assert_eq!(status_field(worker, "NoNewPrivs"), "1");
    w.alice_knocks_and_is_granted();

    // the violation
    std::fs::write(format!("{prefix}.{worker}"), "").expect("trip file");
    // An idle worker sleeps until a knock or the parent's ping (every 5 s) wakes it, and looks
    // for its trip file when its loop turns: a knock from mallory turns it now.
    let knock_port = SocketAddr::new(ip(Lab::SERVER_FOR_MALLORY), 7000);
    w.lab
        .mallory
        .enter(move || try_connect(knock_port, PROBE))
        .expect("enter");
    w.daemon.wait_log(
        "killed by SIGSYS: a system call outside its seccomp filter",
        Duration::from_secs(10),
    );
    w.daemon
        .wait_log("packet worker restarted", Duration::from_secs(5));
    let log = w.daemon.log();
    assert!(
        log.contains("test hook") && !log.contains("the socket call was not stopped"),
        "the worker tried, and was stopped at the call:\n{log}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{worker}/status")).exists(),
        "the killed worker is gone (and reaped)"
    );
    let again = worker_of(parent);
    assert_ne!(again, worker);
    assert_eq!(
        status_field(again, "Seccomp"),
        "2",
        "the new one is sandboxed too"
    );

    // failed closed: mallory still gets nothing, neither the service nor a knock port
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
    assert_eq!(
        w.lab
            .mallory
            .enter(move || try_connect(knock_port, PROBE))
            .expect("enter"),
        Reach::Silent,
        "a knock port stays silent"
    );
    // alice's grant from before the violation was left to the kernel's timeout
    assert_eq!(w.grants().len(), 1, "{}", w.daemon.log());
    assert!(
        w.wait_grants(0, Duration::from_secs(8)).is_empty(),
        "alice's grant expires on its kernel timeout"
    );
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent
    );
    // the new worker reads knocks
    w.alice_knocks_and_is_granted();
    w.finish();
}

#[test]
fn under_a_fast_flood_the_parent_turns_the_kernels_batching_on_and_off_and_knocks_still_open() {
    if !e2e(&[]) {
        return;
    }
    let w = World::alice_door("batching", 1);
    w.daemon.wait_log(
        "the packet worker handed over its socket",
        Duration::from_secs(5),
    );
    // mallory floods a knock port: 20 000 datagrams as fast as one socket sends them (bounded,
    // inside the namespaces), far above the rate from which the kernel is to batch
    let dst = SocketAddr::new(ip(Lab::SERVER_FOR_MALLORY), 9000);
    w.lab
        .mallory
        .enter(move || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
            for _ in 0..20_000 {
                // a datagram the veth queue has no room for is lost, as in a real flood
                let _ = s.send_to(b"flood", dst);
            }
            Ok::<(), std::io::Error>(())
        })
        .expect("enter")
        .expect("flood");
    w.daemon
        .wait_log("NFLOG: kernel batching on", Duration::from_secs(10));
    // the flood is over: the worker says so, the parent turns it off, every packet goes at once
    w.daemon
        .wait_log("NFLOG: kernel batching off", Duration::from_secs(10));
    for failed in [
        "cannot turn kernel batching",
        "the kernel refused a batching request",
    ] {
        assert!(!w.daemon.log().contains(failed), "{}", w.daemon.log());
    }
    w.alice_knocks_and_is_granted();
    w.finish();
}
