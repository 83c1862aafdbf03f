//! End-to-end: `knocker connect`, as ssh's ProxyCommand runs it, against the real knockerd in
//! namespaces. alice's `knocker connect lab 2222` knocks the door open and relays her standard
//! input and output to the service behind it (an echo service); without a profile, or with a
//! wrong one, the protected port never answers and connect gives up after its tries. A client
//! enrolled with the real tools (`knockerd keygen`, `knocker keygen --identity`, `knockerd
//! enroll`) connects through knocker's own SPA door and knocks a stealth SYN. Needs root,
//! iproute2 and nftables, like e2e.rs, and the knocker binary (built next to knockerd by `cargo
//! test --workspace`, or `cargo build -p knocker`). KNOCKER_SKIP_E2E=1 skips on purpose.
//!
//! And a real ssh session: OpenSSH's ssh from alice, with `ProxyCommand=knocker connect %h %p`,
//! to sshd in the server's namespace behind the door (needs openssh-server and -client, which
//! scripts/test.sh installs).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A config directory for alice's knocker, removed when dropped.
struct Profiles(PathBuf);

impl Profiles {
    fn new(tag: &str, profiles: &str) -> Profiles {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("knocker-e2e-connect-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("config dir");
        let path = dir.join("profiles.toml");
        std::fs::write(&path, profiles).expect("profiles");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Profiles(dir)
    }
}

impl Drop for Profiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `knocker connect ARGS` in alice's namespace with `input` on its standard input, which
/// is then closed, and returns its output once it exits (panics after `limit`).
fn connect(w: &World, config: &Path, args: &[&str], input: &[u8], limit: Duration) -> Output {
    let mut cmd = w.lab.alice.command(&knocker_client().to_string_lossy());
    cmd.arg("connect")
        .args(args)
        .env("KNOCKER_CONFIG_DIR", config);
    lab::child::run(&mut cmd, input, limit)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn connect_knocks_a_sequence_door_open_and_relays_the_session() {
    if !e2e(&[]) {
        return;
    }
    let w = World::alice_door("conn", 30);
    let port = SERVICE.to_string();
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent,
        "protected before any knock"
    );

    // No profile for the host: no knock, and the protected port never answers.
    let none = Profiles::new("none", "");
    let started = Instant::now();
    let out = connect(
        &w,
        &none.0,
        &[
            "--tries",
            "2",
            "--wait",
            "0.5",
            Lab::SERVER_FOR_ALICE,
            &port,
        ],
        b"hello\n",
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "knocker: cannot connect to tcp/{SERVICE} on {} (no profile for it, so no knock): \
             connection timed out\n",
            Lab::SERVER_FOR_ALICE
        )
    );
    assert_eq!(text(&out.stdout), "");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited --tries x --wait"
    );

    // A profile with the wrong sequence: two knocks, two waits, nothing opens.
    let wrong = Profiles::new(
        "wrong",
        &format!(
            "[profile.wrong]\nhost = \"{}\"\nsequence = [\"7000\", \"8000\", \"9000:udp\"]\n",
            Lab::SERVER_FOR_ALICE
        ),
    );
    let out = connect(
        &w,
        &wrong.0,
        &["--tries", "2", "--wait", "0.5", "wrong", &port],
        b"",
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "knocker: tcp/{SERVICE} on {} did not open after 2 knocks (last attempt: \
             connection timed out)\n",
            Lab::SERVER_FOR_ALICE
        )
    );
    assert!(w.grants().is_empty(), "{:?}", w.grants());

    // alice's profile: connect knocks, the door opens, and the session is relayed: what she
    // writes reaches the echo service and comes back; her end of input ends the session.
    let lab = Profiles::new(
        "lab",
        &format!(
            "[profile.lab]\nhost = \"{}\"\nsequence = {ALICE_SEQ:?}\n",
            Lab::SERVER_FOR_ALICE
        ),
    );
    let out = connect(
        &w,
        &lab.0,
        &["-v", "lab", &port],
        b"hello\n",
        Duration::from_secs(20),
    );
    let said = text(&out.stderr);
    assert!(out.status.success(), "knocker connect failed: {said}");
    assert_eq!(text(&out.stdout), "hello\n", "the echo, and nothing else");
    assert!(
        said.contains(&format!(
            "knocker: knock 1 of 3: profile lab (sequence) on {}\n",
            Lab::SERVER_FOR_ALICE
        )) && said.contains(&format!(
            "knocker: connected to {}:{SERVICE}\n",
            Lab::SERVER_FOR_ALICE
        )),
        "{said}"
    );
    let g = w.grants();
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!(g[0].to, Lab::ALICE);
    assert_eq!(g[0].service, format!("tcp/{SERVICE}"));
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent,
        "alice's knock opened nothing for mallory"
    );
    w.finish();
}

#[test]
fn connect_finds_an_encoded_profile_by_its_host_and_says_how_long_it_asked_for() {
    if !e2e(&[]) {
        return;
    }
    let profiles = Profiles::new(
        "enc",
        &format!(
            "[profile.enc]\nhost = \"{}\"\nkind = \"encoded\"\nkey_file = \"door.key\"\n\
             base = 50000\nbits = 12\nopen = [\"tcp/{SERVICE}\"]\nduration = \"20s\"\n",
            Lab::SERVER_FOR_ALICE
        ),
    );
    let key = profiles.0.join("door.key");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").expect("key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let conf = door_config(
        "",
        &format!(
            "kind = \"encoded\"\nkey_file = {:?}\nbase = 50000\nbits = 12\nopen_for = 60\n",
            key.display().to_string()
        ),
    );
    let w = World::new("connenc", &conf);
    // ssh passes the host name (%h), not the profile's: the profile whose host it is knocks.
    let out = connect(
        &w,
        &profiles.0,
        &["-v", Lab::SERVER_FOR_ALICE, &SERVICE.to_string()],
        b"over the encoded door\n",
        Duration::from_secs(20),
    );
    let said = text(&out.stderr);
    assert!(out.status.success(), "knocker connect failed: {said}");
    assert_eq!(text(&out.stdout), "over the encoded door\n");
    assert!(said.contains("profile enc (encoded)"), "{said}");
    assert!(
        said.contains("knocker: door open for up to 20s\n"),
        "{said}"
    );
    let g = w.grants();
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!(g[0].to, Lab::ALICE);
    assert_eq!(g[0].timeout_s, 20, "the duration the request asked for");
    w.finish();
}

/// Runs one of the binaries with these arguments and returns its output (panics if it fails).
fn run_ok(program: &Path, args: &[&str], config_dir: &Path) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .env("KNOCKER_CONFIG_DIR", config_dir)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `knocker ARGS` in alice's namespace with her profiles.
fn knocker_in_alice(w: &World, config: &Path, args: &[&str]) -> Output {
    w.lab
        .alice
        .command(&knocker_client().to_string_lossy())
        .args(args)
        .env("KNOCKER_CONFIG_DIR", config)
        .output()
        .expect("run knocker")
}

#[test]
fn an_enrolled_client_connects_through_spa_and_syn_doors_with_the_real_tools() {
    if !e2e(&[]) {
        return;
    }
    // the admin's side: a server key, a config with an spa and a syn door, no clients yet
    let server = Profiles::new("native-server", "");
    let alice = Profiles::new("native-alice", "");
    let conf_text = format!(
        "[daemon]\nserver_key = {:?}\nclients = {:?}\n\n\
         [door.ssh]\nkind = \"spa\"\nport = 62201\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 2\n\n\
         [door.ssh-syn]\nkind = \"syn\"\nport = 4443\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 2\n",
        server.0.join("server.key").display().to_string(),
        server.0.join("clients.toml").display().to_string(),
    );
    let conf = server.0.join("knockerd.toml");
    std::fs::write(&conf, &conf_text).expect("config");
    let conf_s = conf.display().to_string();
    let knockerd = Path::new(env!("CARGO_BIN_EXE_knockerd"));
    run_ok(knockerd, &["--config", &conf_s, "keygen"], &server.0);
    // alice makes her identity; the admin enrolls her; she saves the printed profiles
    let public = run_ok(&knocker_client(), &["keygen", "--identity"], &alice.0);
    let profiles = run_ok(
        knockerd,
        &[
            "--config",
            &conf_s,
            "enroll",
            "alice",
            "--public-key",
            public.trim(),
            "--server",
            Lab::SERVER_FOR_ALICE,
            "--out",
            &server.0.join("alice.toml").display().to_string(),
        ],
        &server.0,
    );
    assert!(profiles.contains("█"), "a QR code is printed: {profiles}");
    // the file handed to alice: the profiles as printed, hers alone
    let handed = server.0.join("alice.toml");
    let toml_part = std::fs::read_to_string(&handed).expect("profiles file");
    assert!(profiles.starts_with(&toml_part), "{profiles}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&handed)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(alice.0.join("profiles.toml"), toml_part).expect("profiles");

    let w = World::new("connnat", &conf_text);
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent
    );
    // ssh -o ProxyCommand='knocker connect %h %p': the SPA profile knocks, the session relays
    let out = connect(
        &w,
        &alice.0,
        &["ssh", &SERVICE.to_string()],
        b"through knocker's own SPA\n",
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "through knocker's own SPA\n");
    w.daemon.wait_log(
        &format!("door=ssh src={} client=\"alice\" grant", Lab::ALICE),
        Duration::from_secs(2),
    );
    // the grant runs out; `knocker knock` with the SPA profile says how long it opens for
    assert!(
        w.wait_grants(0, Duration::from_secs(5)).is_empty(),
        "expired"
    );
    let out = knocker_in_alice(&w, &alice.0, &["knock", "ssh"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("door open for up to 2s"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(w.wait_grants(1, Duration::from_secs(2)).len(), 1);
    // it runs out again; then a stealth SYN from `knocker knock` opens
    assert!(
        w.wait_grants(0, Duration::from_secs(5)).is_empty(),
        "expired"
    );
    let out = knocker_in_alice(&w, &alice.0, &["knock", "ssh-syn"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("the server decides how long"),
        "knock says what it knows of the duration: {}",
        text(&out.stderr)
    );
    let g = w.wait_grants(1, Duration::from_secs(2));
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!((g[0].to.as_str(), g[0].timeout_s), (Lab::ALICE, 2));
    w.daemon.wait_log(
        &format!("door=ssh-syn src={} client=\"alice\" grant", Lab::ALICE),
        Duration::from_secs(2),
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
    w.finish();
}

/// sshd, run in the server's namespace on `port` with a config, host key and authorized key of
/// the test's own; stopped when dropped.
struct Sshd(std::process::Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ssh_through_knocker_connect_as_its_proxy_command() {
    if !e2e(&["sshd", "ssh", "ssh-keygen"]) {
        return;
    }
    const SSH_PORT: u16 = 2200;
    let dir = Profiles::new(
        "ssh",
        &format!(
            "[profile.lab]\nhost = \"{}\"\nsequence = {ALICE_SEQ:?}\n",
            Lab::SERVER_FOR_ALICE
        ),
    );
    let d = dir.0.clone();
    let keygen = |file: &str| {
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join(file))
            .output()
            .expect("ssh-keygen");
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    keygen("host_key");
    keygen("id");
    std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).expect("authorized_keys");
    let sshd_config = d.join("sshd_config");
    std::fs::write(
        &sshd_config,
        format!(
            "Port {SSH_PORT}\nListenAddress 0.0.0.0\nHostKey {}\nAuthorizedKeysFile {}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n",
            d.join("host_key").display(),
            d.join("authorized_keys").display()
        ),
    )
    .expect("sshd_config");
    // sshd wants its privilege separation directory (the package makes it at boot)
    std::fs::create_dir_all("/run/sshd").expect("/run/sshd");

    let w = World::new(
        "connssh",
        &format!(
            "[daemon]\nnflog_group = 4100\n\n[door.ssh]\nsequence = {ALICE_SEQ:?}\nopen = [\"tcp/{SSH_PORT}\"]\nopen_for = 30\n"
        ),
    );
    let _sshd = Sshd(
        w.lab
            .server
            .command("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&sshd_config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let proxy = format!(
        "ProxyCommand={} connect --tries 3 --wait 2 %h %p",
        knocker_client().display()
    );
    let out = ssh_batch(&w.lab.alice, &d.join("id"))
        .args([
            "-o",
            "ConnectTimeout=15",
            "-o",
            &proxy,
            "-p",
            &SSH_PORT.to_string(),
            &format!("root@{}", Lab::SERVER_FOR_ALICE),
            "echo knocked and in; echo over ssh",
        ])
        .env("KNOCKER_CONFIG_DIR", &d)
        .output()
        .expect("run ssh");
    assert!(
        out.status.success(),
        "ssh through knocker connect failed: {}\n{}",
        text(&out.stderr),
        w.daemon.log()
    );
    assert_eq!(text(&out.stdout), "knocked and in\nover ssh\n");
    // the door was opened by the knock, for alice alone
    let g = w.grants();
    assert_eq!(
        (g.len(), g.first().map(|g| g.to.as_str())),
        (1, Some(Lab::ALICE)),
        "{g:?}"
    );
    w.finish();
}
