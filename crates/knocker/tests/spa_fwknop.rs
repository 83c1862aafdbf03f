//! `knocker spa --fwknop` against fwknop itself: the packets knocker writes (`-T -B`) decode with
//! knocker-wire to what was asked, and Debian's fwknopd accepts them (it reads them from a pcap
//! file in its --test mode, which makes every check, HMAC, decryption, digest, age and access,
//! and then skips the firewall); an `~/.fwknoprc` stanza gives knocker the same packet contents
//! as it gives Debian's `fwknop` client; a sent packet is one UDP datagram.
//!
//! The fwknopd and fwknop parts need Debian's `fwknop-server` and `fwknop-client`. Without them
//! those tests FAIL, saying what is missing; KNOCKER_SKIP_E2E=1 skips them on purpose (the one
//! rule of every end-to-end test, `knocker_lab::needs`).

use std::fs;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use knocker_lab::TempDir;
use knocker_wire::fwknop::{
    decode, key_from_base64, Digest, FwknopKeys, MessageType, SpaMessage, SpaRequest,
};
use knocker_wire::Service;

const KNOCKER: &str = env!("CARGO_BIN_EXE_knocker");

const ENC: &str = "fwknoptestkey123";
const HMAC: &str = "fwknophmackey12345678";
const B64_ENC: &str = "1W2Bh/GxHbKIvL2xV+bBG6AWYjHDvsWNzkAzewiinew=";
const B64_HMAC: &str =
    "ZGh1s5LX7t9Rswe+B1S+X0ToYeEpfa/crMFHzs671DzWS297Ik+kxQKBGGmGqG1952CByPKfv/Pxi2Lh5K0TPw==";

fn knocker(args: &[&str], home: &Path) -> Output {
    Command::new(KNOCKER)
        .args(args)
        .env("HOME", home)
        .env_remove("SPOOF_USER")
        .output()
        .expect("run knocker")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "knocker failed ({}): {}",
        out.status,
        stderr(out)
    );
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Runs knocker with `args` plus `-T -B FILE --no-rc-file` (unless the args name an rc file) and
/// returns the payload it wrote.
fn written_packet(tmp: &TempDir, args: &[&str]) -> Vec<u8> {
    let file = tmp.join("packet.txt");
    let _ = fs::remove_file(&file);
    let mut all = vec!["spa", "--fwknop", "-T", "-B", file.to_str().expect("utf-8")];
    if !args.iter().any(|a| *a == "--rc-file" || *a == "-n") {
        all.push("--no-rc-file");
    }
    all.extend_from_slice(args);
    assert_ok(&knocker(&all, &tmp.0));
    let mut payload = fs::read(&file).expect("packet file");
    assert_eq!(payload.pop(), Some(b'\n'), "-B writes one line");
    assert!(!payload.contains(&b'\n'));
    payload
}

fn keys(enc: &[u8], hmac: &[u8], digest: Digest) -> FwknopKeys {
    FwknopKeys::new(enc.to_vec().into(), hmac.to_vec().into(), digest).expect("keys")
}

fn text_keys(digest: Digest) -> FwknopKeys {
    keys(ENC.as_bytes(), HMAC.as_bytes(), digest)
}

fn b64_keys(digest: Digest) -> FwknopKeys {
    FwknopKeys::new(
        key_from_base64(B64_ENC).expect("b64"),
        key_from_base64(B64_HMAC).expect("b64"),
        digest,
    )
    .expect("keys")
}

/// One option set: the arguments, the keys that open it, and what it must decode to.
struct Case {
    name: &'static str,
    args: Vec<&'static str>,
    keys: FwknopKeys,
    access_conf: String,
    expect: fn(&SpaMessage),
}

fn text_access(extra: &str) -> String {
    format!("SOURCE ANY\nKEY {ENC}\nHMAC_KEY {HMAC}\n{extra}")
}

fn cases() -> Vec<Case> {
    let text = ["--key-rijndael", ENC, "--key-hmac", HMAC];
    let b64 = [
        "--key-base64-rijndael",
        B64_ENC,
        "--key-base64-hmac",
        B64_HMAC,
    ];
    let with = |keys: [&'static str; 4], rest: &[&'static str]| {
        let mut v = keys.to_vec();
        v.extend_from_slice(rest);
        v
    };
    vec![
        Case {
            name: "one port",
            args: with(text, &["-A", "tcp/22", "-a", "10.200.0.2", "-U", "alice"]),
            keys: text_keys(Digest::Sha256),
            access_conf: text_access("OPEN_PORTS tcp/22\n"),
            expect: |m| {
                assert_eq!(m.message_type, MessageType::Access);
                assert_eq!(m.services(), &[Service::tcp(22)]);
                assert_eq!(m.allow, IpAddr::V4(Ipv4Addr::new(10, 200, 0, 2)));
                assert_eq!(m.username, "alice");
            },
        },
        Case {
            name: "several ports, base64 keys",
            args: with(b64, &["-A", "tcp/22,udp/53,tcp/8443", "-a", "192.0.2.7"]),
            keys: b64_keys(Digest::Sha256),
            access_conf: format!(
                "SOURCE ANY\nKEY_BASE64 {B64_ENC}\nHMAC_KEY_BASE64 {B64_HMAC}\n\
                 OPEN_PORTS tcp/22,udp/53,tcp/8443\n"
            ),
            expect: |m| {
                assert_eq!(
                    m.services(),
                    &[Service::tcp(22), Service::udp(53), Service::tcp(8443)]
                );
            },
        },
        Case {
            name: "sha512 HMAC, sha384 digest",
            args: with(
                text,
                &[
                    "-A",
                    "tcp/22",
                    "-a",
                    "10.1.2.3",
                    "--hmac-digest-type",
                    "sha512",
                    "-m",
                    "sha384",
                ],
            ),
            keys: text_keys(Digest::Sha512),
            access_conf: text_access("HMAC_DIGEST_TYPE sha512\nOPEN_PORTS tcp/22\n"),
            expect: |m| assert_eq!(m.services(), &[Service::tcp(22)]),
        },
        Case {
            name: "sha1 HMAC",
            args: with(
                text,
                &[
                    "-A",
                    "tcp/22",
                    "-a",
                    "10.1.2.3",
                    "--hmac-digest-type",
                    "SHA1",
                ],
            ),
            keys: text_keys(Digest::Sha1),
            access_conf: text_access("HMAC_DIGEST_TYPE sha1\nOPEN_PORTS tcp/22\n"),
            expect: |_| {},
        },
        Case {
            name: "md5 HMAC, md5 digest",
            args: with(
                text,
                &[
                    "-A",
                    "tcp/22",
                    "-a",
                    "10.1.2.3",
                    "--hmac-digest-type",
                    "md5",
                    "-m",
                    "md5",
                ],
            ),
            keys: text_keys(Digest::Md5),
            access_conf: text_access("HMAC_DIGEST_TYPE md5\nOPEN_PORTS tcp/22\n"),
            expect: |_| {},
        },
        Case {
            name: "client timeout",
            args: with(text, &["-A", "tcp/22", "-a", "10.200.0.2", "-f", "120"]),
            keys: text_keys(Digest::Sha256),
            access_conf: text_access("OPEN_PORTS tcp/22\n"),
            expect: |m| {
                assert_eq!(m.message_type, MessageType::ClientTimeoutAccess);
                assert_eq!(m.client_timeout, Some(120));
            },
        },
        Case {
            name: "source address",
            args: with(text, &["-A", "tcp/22", "-s"]),
            keys: text_keys(Digest::Sha256),
            access_conf: text_access("OPEN_PORTS tcp/22\n"),
            expect: |m| assert_eq!(m.allow, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        },
        Case {
            name: "command",
            args: with(text, &["-C", "touch /tmp/never", "-a", "10.200.0.2"]),
            keys: text_keys(Digest::Sha256),
            access_conf: text_access("ENABLE_CMD_EXEC Y\n"),
            expect: |m| {
                assert_eq!(m.message_type, MessageType::Command);
                assert_eq!(m.request, SpaRequest::Command("touch /tmp/never".into()));
            },
        },
    ]
}

#[test]
fn written_packets_decode_to_what_was_asked() {
    let tmp = TempDir::new("spa");
    for case in cases() {
        let before = now();
        let payload = written_packet(&tmp, &case.args);
        let msg = decode(&case.keys, &payload).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        (case.expect)(&msg);
        assert!(
            (before..=now()).contains(&msg.timestamp),
            "{}: timestamp {}",
            case.name,
            msg.timestamp
        );
    }
}

/// A pcap file (Ethernet) holding one UDP datagram from `src` to 10.200.0.1:62201.
fn pcap(payload: &[u8], src: Ipv4Addr) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&62201u16.to_be_bytes());
    udp.extend_from_slice(&u16::try_from(udp_len).expect("len").to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&u16::try_from(20 + udp_len).expect("len").to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&[10, 200, 0, 1]);
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0];
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&udp);

    // The classic pcap header (microseconds, little-endian), Ethernet link type.
    let mut file = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    file.extend_from_slice(&2u16.to_le_bytes());
    file.extend_from_slice(&4u16.to_le_bytes());
    for field in [0u32, 0, 65535, 1] {
        file.extend_from_slice(&field.to_le_bytes());
    }
    let secs = u32::try_from(now()).expect("time");
    let len = u32::try_from(frame.len()).expect("len");
    for field in [secs, 0, len, len] {
        file.extend_from_slice(&field.to_le_bytes());
    }
    file.extend_from_slice(&frame);
    file
}

/// fwknopd in --test mode on a pcap file holding `payload`; its log (stderr).
fn fwknopd(tmp: &TempDir, access_conf: &str, payload: &[u8], src: Ipv4Addr) -> String {
    let conf = tmp.private(
        "fwknopd.conf",
        "PCAP_FILTER udp port 62201\nENABLE_SPA_PACKET_AGING Y\nMAX_SPA_PACKET_AGE 120\n",
    );
    let access = tmp.private("access.conf", access_conf);
    let pcap_file = tmp.join("spa.pcap");
    fs::write(&pcap_file, pcap(payload, src)).expect("pcap");
    // a fresh state each time: no digest cache remembers an earlier case's packet
    let state = tmp.join("fwknopd");
    let _ = fs::remove_dir_all(&state);
    // -C 1: exit after the one packet (fwknopd keeps reading a pcap file otherwise), within a
    // deadline: never hang a test run on it.
    let out = knocker_lab::child::run(
        Command::new("fwknopd")
            .args(knocker_lab::fwknopd::args(&conf, &access, &state).expect("fwknopd's files"))
            .args(["-t", "-v", "-C", "1", "--pcap-file"])
            .arg(&pcap_file),
        b"",
        Duration::from_secs(30),
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn debians_fwknopd_accepts_knockers_packets() {
    // Debian's fwknop-server
    if !knocker_lab::needs(false, &["fwknopd"]) {
        return;
    }
    let tmp = TempDir::new("spa");
    let src = Ipv4Addr::new(10, 200, 0, 2);
    for case in cases() {
        let payload = written_packet(&tmp, &case.args);
        let log = fwknopd(&tmp, &case.access_conf, &payload, src);
        // Every check passed when fwknopd reaches the point where --test skips the action.
        let passed = if case.name == "command" {
            "--test mode enabled, skipping command execution"
        } else {
            "--test mode enabled, skipping firewall manipulation"
        };
        assert!(log.contains(passed), "{}: fwknopd said:\n{log}", case.name);
        assert!(log.contains("FKO Version: 3.0.0"), "{}:\n{log}", case.name);
    }

    // The same packet with a wrong key in access.conf: fwknopd refuses it (the oracle can say no).
    let payload = written_packet(&tmp, &cases()[0].args);
    let log = fwknopd(
        &tmp,
        &format!("SOURCE ANY\nKEY {ENC}\nHMAC_KEY wrong-{HMAC}\nOPEN_PORTS tcp/22\n"),
        &payload,
        src,
    );
    assert!(!log.contains("--test mode enabled, skipping"), "{log}");
    assert!(log.contains("Error creating fko context"), "{log}");

    // And one written an hour in the past fails fwknopd's age check.
    let mut args = cases().swap_remove(0).args;
    args.extend_from_slice(&["--time-offset-minus", "1h"]);
    let payload = written_packet(&tmp, &args);
    let log = fwknopd(&tmp, &text_access("OPEN_PORTS tcp/22\n"), &payload, src);
    assert!(log.contains("time difference is too great"), "{log}");
}

const RC: &str = "\
[default]
HMAC_DIGEST_TYPE     sha512
SPOOF_USER           rcuser

[myssh]
SPA_SERVER           127.0.0.1
ACCESS               tcp/22,udp/53
ALLOW_IP             198.51.100.4
KEY_BASE64           1W2Bh/GxHbKIvL2xV+bBG6AWYjHDvsWNzkAzewiinew=
HMAC_KEY_BASE64      ZGh1s5LX7t9Rswe+B1S+X0ToYeEpfa/crMFHzs671DzWS297Ik+kxQKBGGmGqG1952CByPKfv/Pxi2Lh5K0TPw==
FW_TIMEOUT           300
USE_HMAC             Y
";

fn comparable(msg: SpaMessage) -> SpaMessage {
    SpaMessage {
        random: None,
        timestamp: 0,
        ..msg
    }
}

#[test]
fn an_rc_stanza_gives_the_same_packet_as_fwknop_gives() {
    let tmp = TempDir::new("spa");
    let rc = tmp.private("fwknoprc", RC);
    let rc_arg = rc.to_str().expect("utf-8");
    let keys = b64_keys(Digest::Sha512);
    let ours = written_packet(&tmp, &["--rc-file", rc_arg, "-n", "myssh"]);
    let ours = decode(&keys, &ours).expect("knocker's packet");
    assert_eq!(ours.username, "rcuser");
    assert_eq!(ours.services(), &[Service::tcp(22), Service::udp(53)]);
    assert_eq!(ours.allow, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 4)));
    assert_eq!(ours.client_timeout, Some(300));

    // The command line overrides the stanza; ~/.fwknoprc is the default file.
    fs::copy(&rc, tmp.join(".fwknoprc")).expect("copy");
    fs::set_permissions(tmp.join(".fwknoprc"), fs::Permissions::from_mode(0o600)).expect("chmod");
    let p = written_packet(
        &tmp,
        &["-n", "MySSH", "-a", "203.0.113.9", "-f", "0", "-U", "x"],
    );
    let m = decode(&keys, &p).expect("overridden");
    assert_eq!(m.allow, IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)));
    assert_eq!(m.client_timeout, None);
    assert_eq!(m.message_type, MessageType::Access);
    assert_eq!(m.username, "x");

    // Debian's fwknop-client
    if !knocker_lab::needs(false, &["fwknop"]) {
        return;
    }
    let theirs = tmp.join("fwknop.pkt");
    let out = Command::new("fwknop")
        .args([
            "-n",
            "myssh",
            "--rc-file",
            rc_arg,
            "--test",
            "--no-save-args",
            "-B",
        ])
        .arg(&theirs)
        .env("HOME", &tmp.0)
        .output()
        .expect("run fwknop");
    assert!(out.status.success(), "fwknop: {}", stderr(&out));
    let mut theirs = fs::read(&theirs).expect("fwknop's packet");
    theirs.pop();
    let theirs = decode(&keys, &theirs).expect("fwknop's packet decodes");
    assert_eq!(comparable(ours), comparable(theirs));
}

#[test]
fn rc_file_mistakes_are_refused() {
    let tmp = TempDir::new("spa");
    let rc = tmp.private("fwknoprc", RC);
    let rc_arg = rc.to_str().expect("utf-8");
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = knocker(
        &["spa", "--fwknop", "--rc-file", rc_arg, "-n", "myssh", "-T"],
        &tmp.0,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("run `chmod 600 {rc_arg}`")),
        "{}",
        stderr(&out)
    );

    fs::set_permissions(&rc, fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = knocker(
        &["spa", "--fwknop", "--rc-file", rc_arg, "-n", "nope", "-T"],
        &tmp.0,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has no stanza [nope]"),
        "{}",
        stderr(&out)
    );

    let gpg = tmp.private("gpgrc", "[g]\nACCESS tcp/22\nUSE_GPG Y\n");
    let out = knocker(
        &[
            "spa",
            "--fwknop",
            "--rc-file",
            gpg.to_str().expect("utf-8"),
            "-n",
            "g",
            "-T",
        ],
        &tmp.0,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(":3: USE_GPG: GnuPG encryption"),
        "{}",
        stderr(&out)
    );

    // -n with no ~/.fwknoprc.
    let out = knocker(&["spa", "--fwknop", "-n", "myssh", "-T"], &tmp.0);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(".fwknoprc"), "{}", stderr(&out));
}

#[test]
fn usage_mistakes_exit_2_and_say_what_to_do() {
    let tmp = TempDir::new("spa");
    let keys = ["--key-rijndael", ENC, "--key-hmac", HMAC, "--no-rc-file"];
    let run = |extra: &[&str]| {
        let mut args = vec!["spa", "--fwknop", "-T"];
        args.extend_from_slice(&keys);
        args.extend_from_slice(extra);
        knocker(&args, &tmp.0)
    };
    for (extra, says) in [
        (&["-A", "tcp/22", "-R"][..], "never asks a web service"),
        (
            &["-A", "tcp/22", "-a", "1.2.3.4", "-P", "tcp"][..],
            "UDP only",
        ),
        (&["-A", "22", "-a", "1.2.3.4"][..], "bad access"),
        (&["-a", "1.2.3.4"][..], "nothing to open"),
        (&["-A", "tcp/22"][..], "no address to open for"),
        (
            &[
                "-A",
                "tcp/22",
                "-a",
                "1.2.3.4",
                "--hmac-digest-type",
                "sha3_256",
            ][..],
            "unknown digest type",
        ),
        (
            &["-A", "tcp/22", "-a", "1.2.3.4", "-f", "70000"][..],
            "--fw-timeout",
        ),
    ] {
        let out = run(extra);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{extra:?}: {}", stderr(&out));
    }
    let out = knocker(
        &[
            "spa",
            "--fwknop",
            "-T",
            "--no-rc-file",
            "-A",
            "tcp/22",
            "-s",
            "--key-rijndael",
            "k",
        ],
        &tmp.0,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no HMAC key"), "{}", stderr(&out));
    let same = knocker(
        &[
            "spa",
            "--fwknop",
            "-T",
            "--no-rc-file",
            "-A",
            "tcp/22",
            "-s",
            "--key-rijndael",
            "k",
            "--key-hmac",
            "k",
        ],
        &tmp.0,
    );
    assert_eq!(same.status.code(), Some(2));
    assert!(stderr(&same).contains("identical"), "{}", stderr(&same));
    // Keys never show up in messages.
    assert!(!stderr(&same).contains("--key-hmac k"));
    // Without --fwknop: clap says what is missing.
    let out = knocker(&["spa", "-A", "tcp/22", "host"], &tmp.0);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--fwknop"), "{}", stderr(&out));
}

#[test]
fn a_sent_packet_is_one_datagram_holding_the_payload() {
    let tmp = TempDir::new("spa");
    let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = server.local_addr().expect("addr").port().to_string();
    let saved = tmp.join("sent.txt");
    let out = knocker(
        &[
            "spa",
            "--fwknop",
            "--no-rc-file",
            "-A",
            "tcp/22",
            "--key-rijndael",
            ENC,
            "--key-hmac",
            HMAC,
            "-p",
            &port,
            "-B",
            saved.to_str().expect("utf-8"),
            "-v",
            "127.0.0.1",
        ],
        &tmp.0,
    );
    assert_ok(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with(&format!(
            "fwknop SPA to 127.0.0.1:{port}/udp: open tcp/22 for 127.0.0.1"
        )),
        "{said}"
    );
    let mut buf = [0u8; 2048];
    let (n, _) = server.recv_from(&mut buf).expect("datagram");
    let msg = decode(&text_keys(Digest::Sha256), &buf[..n]).expect("decodes");
    // Without -a: the address this machine sends from towards the server.
    assert_eq!(msg.allow, IpAddr::V4(Ipv4Addr::LOCALHOST));
    // -B without -T saves the packet that was sent, as fwknop does.
    let saved = fs::read(&saved).expect("saved");
    assert_eq!(&saved[..saved.len() - 1], &buf[..n]);
    // Exactly one datagram.
    server
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    assert!(server.recv_from(&mut buf).is_err());
}

/// A UDP socket on loopback to knock at, and its port.
fn listener() -> (UdpSocket, u16) {
    let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = server.local_addr().expect("addr").port();
    (server, port)
}

fn receive(server: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let (n, _) = server.recv_from(&mut buf).expect("datagram");
    buf[..n].to_vec()
}

#[test]
fn fwknop_profiles_knock_one_packet() {
    let tmp = TempDir::new("spa");
    let config = tmp.join("config");
    fs::create_dir_all(&config).expect("config dir");
    tmp.private("config/fw.key", &format!("{B64_ENC}\n"));
    tmp.private("config/fw.hmac", &format!("{B64_HMAC}\n"));
    let rc = tmp.private("fwknoprc", RC);
    let (server, port) = listener();
    let profiles = format!(
        "[profile.stanza]\nhost = \"127.0.0.1\"\nkind = \"fwknop\"\nstanza = \"myssh\"\n\
         rc_file = {rc:?}\nport = {port}\nopen = [\"udp/1194\"]\n\n\
         [profile.files]\nhost = \"127.0.0.1\"\nkind = \"fwknop\"\nkey_file = \"fw.key\"\n\
         hmac_key_file = \"fw.hmac\"\nhmac_digest = \"sha256\"\nopen = [\"tcp/22\", \"tcp/443\"]\n\
         allow = \"source\"\nduration = \"2m\"\nport = {port}\nuser = \"bob\"\n"
    );
    tmp.private("config/profiles.toml", &profiles);
    let run = |args: &[&str]| {
        Command::new(KNOCKER)
            .args(args)
            .env("KNOCKER_CONFIG_DIR", &config)
            .env("HOME", &tmp.0)
            .output()
            .expect("run knocker")
    };

    let out = run(&["knock", "-v", "stanza"]);
    assert_ok(&out);
    let msg = decode(&b64_keys(Digest::Sha512), &receive(&server)).expect("stanza profile");
    // The stanza's keys, digest, user, allow and timeout; the profile's service.
    assert_eq!(msg.services(), &[Service::udp(1194)]);
    assert_eq!(msg.allow, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 4)));
    assert_eq!(msg.client_timeout, Some(300));
    assert_eq!(msg.username, "rcuser");

    let out = run(&["knock", "files"]);
    assert_ok(&out);
    let msg = decode(&b64_keys(Digest::Sha256), &receive(&server)).expect("key-file profile");
    assert_eq!(msg.services(), &[Service::tcp(22), Service::tcp(443)]);
    assert_eq!(msg.allow, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(msg.client_timeout, Some(120));
    assert_eq!(msg.username, "bob");

    let out = run(&["profile", "list"]);
    assert_ok(&out);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("fwknop: stanza [myssh], open udp/1194"),
        "{listed}"
    );
    let out = run(&["sequence", "files"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("one SPA packet"), "{}", stderr(&out));

    // An exposed key file is refused, naming the fix.
    fs::set_permissions(
        tmp.join("config/fw.hmac"),
        fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let out = run(&["knock", "files"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}
