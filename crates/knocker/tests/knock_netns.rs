//! End to end, on a real network stack: the built `knocker` runs in a client network namespace
//! and knocks across a veth pair on a server namespace, whose nftables counters say exactly what
//! arrived. Real packets, no mocks: this is where "one SYN per TCP knock, one one-byte datagram
//! per UDP knock, nothing else" is proven, for IPv4 and IPv6.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables). Without them every test here FAILS, saying
//! what is missing; KNOCKER_SKIP_E2E=1 skips them on purpose (the one rule, `knocker_lab::e2e`).
//!
//! Each test builds its own pair of namespaces with knocker-lab, named after this process, the
//! test and a counter (`kn<pid>-kc-<test>-srv<n>`, `kn<pid>-kc-<test>-cli<n>`), so tests run in
//! parallel and never touch the host's own network: every address and rule lives inside those
//! namespaces, which a guard deletes when the test ends, passes or panics.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{self, Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use knocker_lab::Netns;
use knocker_wire::encoded::{self, EncodedSpec, Push, Reassembly};
use knocker_wire::{EncodedKey, Proto, Service};

const KNOCKER: &str = env!("CARGO_BIN_EXE_knocker");

/// The ports the server's ruleset watches. Anything else TCP or UDP lands in `stray`.
const TCP_PORTS: [u16; 3] = [7000, 7001, 8000];
const UDP_PORTS: [u16; 2] = [9000, 9001];

/// Two private network namespaces joined by a veth pair (knocker-lab's): the server at
/// 10.200.1.1 and fd00:200:1::1, the client at .2 and ::2. Dropping it deletes both namespaces
/// (which takes the veth pair and the ruleset with them).
struct Lab {
    // Field order is drop order: the client first, then the server.
    client: Netns,
    server: Netns,
}

impl Lab {
    fn new(test: &str) -> Lab {
        let server = Netns::unique(&format!("kc-{test}-srv")).expect("server namespace");
        let client = Netns::unique(&format!("kc-{test}-cli")).expect("client namespace");
        knocker_lab::link(
            &server,
            "kc0",
            &["10.200.1.1/24", "fd00:200:1::1/64"],
            &client,
            "kc1",
            &["10.200.1.2/24", "fd00:200:1::2/64"],
        )
        .expect("veth pair");
        let lab = Lab { client, server };
        lab.install_ruleset();
        lab
    }

    fn server_v4(&self) -> String {
        "10.200.1.1".into()
    }

    fn server_v6(&self) -> String {
        "fd00:200:1::1".into()
    }

    fn client_v4(&self) -> String {
        "10.200.1.2".into()
    }

    /// Counts, and drops, what reaches the server: per TCP port the SYNs (SYN set, ACK clear) and
    /// any other segment; per UDP port the datagrams of exactly one byte (UDP length 9); and any
    /// other TCP or UDP packet as `stray`. Dropping keeps the server silent, as a knock port is.
    fn install_ruleset(&self) {
        let mut counters = String::new();
        let mut rules = String::new();
        for port in TCP_PORTS {
            counters.push_str(&format!(
                "  counter syn{port} {{}}\n  counter other{port} {{}}\n"
            ));
            rules.push_str(&format!(
                "    tcp dport {port} tcp flags & (syn|ack) == syn counter name \"syn{port}\" drop\n\
                 \x20   tcp dport {port} counter name \"other{port}\" drop\n"
            ));
        }
        for port in UDP_PORTS {
            counters.push_str(&format!("  counter udp{port} {{}}\n"));
            rules.push_str(&format!(
                "    udp dport {port} udp length 9 counter name \"udp{port}\" drop\n"
            ));
        }
        let ruleset = format!(
            "table inet kctest {{\n{counters}  counter stray {{}}\n  chain input {{\n    \
             type filter hook input priority 0; policy accept;\n{rules}    \
             meta l4proto {{ tcp, udp }} counter name \"stray\" drop\n  }}\n}}\n"
        );
        self.server.nft(&ruleset).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Every counter of the server's ruleset, by name.
    fn counters(&self) -> BTreeMap<String, u64> {
        let text = self
            .server
            .exec("nft", &["list", "counters", "table", "inet", "kctest"])
            .unwrap_or_else(|e| panic!("nft list counters: {e}"));
        let mut counters = BTreeMap::new();
        let mut name = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("counter ") {
                name = rest.split_whitespace().next().map(str::to_string);
            } else if let Some(rest) = line.strip_prefix("packets ") {
                let packets = rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("unreadable counter line {line:?}"));
                counters.insert(name.take().expect("a counter name first"), packets);
            }
        }
        counters
    }

    /// Asserts that the counters are `expected` (and every other counter 0).
    ///
    /// The knocker has exited when this is called, but its last packet may still be on its way
    /// (waiting for ARP or neighbour discovery), so this waits until every expected counter is
    /// reached, up to 3 s, then compares everything. Comparing exactly is sound even if it
    /// happens late: a TCP knock closes its socket in SYN-SENT, so the kernel has nothing left to
    /// retransmit, and any second SYN would be a real bug.
    fn assert_counters(&self, expected: &[(&str, u64)]) {
        let mut want: BTreeMap<String, u64> = self.counters().into_keys().map(|k| (k, 0)).collect();
        for (name, n) in expected {
            assert!(want.contains_key(*name), "no counter {name} in the ruleset");
            want.insert((*name).to_string(), *n);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut got = self.counters();
        while Instant::now() < deadline && want.iter().any(|(k, n)| got.get(k) < Some(n)) {
            thread::sleep(Duration::from_millis(20));
            got = self.counters();
        }
        assert_eq!(got, want, "server counters (left: seen, right: expected)");
    }

    /// Runs the knocker in the client namespace.
    fn knocker(&self, args: &[&str], config_dir: Option<&PathBuf>) -> Output {
        let mut cmd = self.client.command(KNOCKER);
        cmd.args(args);
        if let Some(dir) = config_dir {
            cmd.env("KNOCKER_CONFIG_DIR", dir);
        }
        cmd.output().expect("run knocker")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "knocker failed ({}): stderr: {}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr), "", "knocker wrote to stderr");
}

/// A scratch config directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("knocker-e2e-{}-{test}", process::id()));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The counters a knock of 7000, 9000:udp, 8000, udp/9001, 7001/tcp leaves: one each.
const MIXED_SEQUENCE: [&str; 5] = ["7000", "9000:udp", "8000", "udp/9001", "7001/tcp"];
const ONE_OF_EACH: [(&str, u64); 5] = [
    ("syn7000", 1),
    ("syn7001", 1),
    ("syn8000", 1),
    ("udp9000", 1),
    ("udp9001", 1),
];

#[test]
fn ipv4_knocks_arrive_once_each_and_verbose_names_them() {
    if !knocker_lab::e2e(&[]) {
        return;
    }
    let lab = Lab::new("v4");
    let host = lab.server_v4();
    let mut args = vec!["knock", "-v", host.as_str()];
    args.extend(MIXED_SEQUENCE);
    let out = lab.knocker(&args, None);
    assert_success(&out);
    assert_eq!(
        text(&out.stdout),
        format!(
            "hitting tcp {host}:7000\nhitting udp {host}:9000\nhitting tcp {host}:8000\n\
             hitting udp {host}:9001\nhitting tcp {host}:7001\n"
        )
    );
    lab.assert_counters(&ONE_OF_EACH);
}

#[test]
fn ipv6_knocks_arrive_once_each() {
    if !knocker_lab::e2e(&[]) {
        return;
    }
    let lab = Lab::new("v6");
    let host = lab.server_v6();
    let mut args = vec!["knock", "-6", host.as_str()];
    args.extend(MIXED_SEQUENCE);
    let out = lab.knocker(&args, None);
    assert_success(&out);
    assert_eq!(text(&out.stdout), "", "silent without -v");
    lab.assert_counters(&ONE_OF_EACH);

    // A bracketed literal, with no family forced, goes the same way.
    let bracketed = format!("[{host}]");
    let out = lab.knocker(&["knock", "-v", &bracketed, "7000"], None);
    assert_success(&out);
    assert_eq!(text(&out.stdout), format!("hitting tcp [{host}]:7000\n"));
    lab.assert_counters(&[
        ("syn7000", 2),
        ("syn7001", 1),
        ("syn8000", 1),
        ("udp9000", 1),
        ("udp9001", 1),
    ]);
}

#[test]
fn udp_default_and_delay() {
    if !knocker_lab::e2e(&[]) {
        return;
    }
    let lab = Lab::new("udp");
    // -u makes bare ports UDP; a port that names tcp stays TCP. -d only has to work here:
    // timing is not asserted.
    let out = lab.knocker(
        &[
            "knock",
            "-u",
            "-d",
            "200",
            &lab.server_v4(),
            "9000",
            "7000:tcp",
            "9001",
        ],
        None,
    );
    assert_success(&out);
    assert_eq!(text(&out.stdout), "");
    lab.assert_counters(&[("udp9000", 1), ("syn7000", 1), ("udp9001", 1)]);
}

#[test]
fn errors_send_nothing() {
    if !knocker_lab::e2e(&[]) {
        return;
    }
    let lab = Lab::new("err");
    // A bad port anywhere stops the whole sequence before the first knock.
    let out = lab.knocker(&["knock", &lab.server_v4(), "7000", "70000"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("knocker: bad port \"70000\": "),
        "{}",
        text(&out.stderr)
    );
    // A family the address does not have.
    let out = lab.knocker(&["knock", "-4", &lab.server_v6(), "7000"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no IPv4 address"),
        "{}",
        text(&out.stderr)
    );
    // A name that does not resolve (the namespace reaches no resolver, so this fails fast).
    let out = lab.knocker(&["knock", "nosuch.invalid", "7000"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("knocker: unknown host \"nosuch.invalid\""),
        "{}",
        text(&out.stderr)
    );
    lab.assert_counters(&[]);
}

#[test]
fn profiles_knock_end_to_end() {
    if !knocker_lab::e2e(&[]) {
        return;
    }
    let lab = Lab::new("prof");
    let config = TempDir::new("prof");
    let add = |args: &[&str]| {
        let out = Command::new(KNOCKER)
            .args(["profile", "add"])
            .args(args)
            .env("KNOCKER_CONFIG_DIR", &config.0)
            .output()
            .expect("run knocker");
        assert_success(&out);
    };
    add(&[
        "-d",
        "10",
        "myserver",
        &lab.server_v4(),
        "7000",
        "9000:udp",
        "8000",
    ]);
    add(&["-6", "-u", "six", &lab.server_v6(), "9001", "7001:tcp"]);

    // Knocking a profile says how long the door stays open (on standard error); -q does not.
    let out = lab.knocker(&["knock", "myserver"], Some(&config.0));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "the server decides how long the door stays open: a sequence knock carries no duration\n"
    );
    assert_eq!(text(&out.stdout), "");
    lab.assert_counters(&[("syn7000", 1), ("udp9000", 1), ("syn8000", 1)]);

    let out = lab.knocker(&["knock", "-q", "-v", "six"], Some(&config.0));
    assert_success(&out);
    let v6 = lab.server_v6();
    assert_eq!(
        text(&out.stdout),
        format!("hitting udp [{v6}]:9001\nhitting tcp [{v6}]:7001\n")
    );
    lab.assert_counters(&[
        ("syn7000", 1),
        ("udp9000", 1),
        ("syn8000", 1),
        ("udp9001", 1),
        ("syn7001", 1),
    ]);

    // With ports, a profile's name is just a host name: here one that does not resolve.
    let out = lab.knocker(&["knock", "myserver", "7000"], Some(&config.0));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("knocker: unknown host \"myserver\""),
        "{}",
        text(&out.stderr)
    );
    lab.assert_counters(&[
        ("syn7000", 1),
        ("udp9000", 1),
        ("syn8000", 1),
        ("udp9001", 1),
        ("syn7001", 1),
    ]);
}

// Rotating sequences and encoded knocks, on the wire.

/// The key `00 01 .. 1f`, as knocker-wire's known answers use it.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

impl Lab {
    /// Adds named counters that count, and drop, what `rules` match. Each rule is inserted at
    /// the head of the chain, so the last one given is matched first.
    fn watch(&self, rules: &[(String, String)]) {
        let mut script = String::new();
        for (name, matcher) in rules {
            script.push_str(&format!(
                "add counter inet kctest {name}\n\
                 insert rule inet kctest input {matcher} counter name \"{name}\" drop\n"
            ));
        }
        self.server.nft(&script).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A config directory holding `profiles` and the key file `k` (mode 0600) beside it.
fn key_config(test: &str, profiles: &str) -> TempDir {
    let config = TempDir::new(test);
    fs::create_dir_all(&config.0).expect("mkdir");
    fs::write(config.0.join("profiles.toml"), profiles).expect("write profiles");
    let key = config.0.join("k");
    fs::write(&key, format!("{KEY}\n")).expect("write key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");
    config
}

/// `knocker sequence ARGS` outside the namespaces (it needs no network): the printed services.
fn printed_sequence(config: &TempDir, args: &[&str]) -> Vec<(String, u16)> {
    let out = Command::new(KNOCKER)
        .arg("sequence")
        .args(args)
        .env("KNOCKER_CONFIG_DIR", &config.0)
        .output()
        .expect("run knocker");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .split_whitespace()
        .map(|word| match word.split_once(':') {
            Some((port, proto)) => (proto.to_string(), port.parse().expect("port")),
            None => ("tcp".to_string(), word.parse().expect("port")),
        })
        .collect()
}

/// Counters for each printed port (one SYN, or one one-byte datagram), and one for anything
/// else in the range; returns what the counters must read after the knock.
fn watch_sequence(lab: &Lab, sequence: &[(String, u16)], range: &str) -> Vec<(String, u64)> {
    let mut rules = vec![
        ("rangetcp".to_string(), format!("tcp dport {range}")),
        ("rangeudp".to_string(), format!("udp dport {range}")),
    ];
    let mut expected = Vec::new();
    for (proto, port) in sequence {
        let name = format!("{proto}{port}");
        let matcher = match proto.as_str() {
            "tcp" => format!("tcp dport {port} tcp flags & (syn|ack) == syn"),
            _ => format!("udp dport {port} udp length 9"),
        };
        rules.push((name.clone(), matcher));
        expected.push((name, 1));
    }
    lab.watch(&rules);
    expected
}

fn as_counters(expected: &[(String, u64)]) -> Vec<(&str, u64)> {
    expected.iter().map(|(n, c)| (n.as_str(), *c)).collect()
}

#[test]
fn a_rotating_profile_sends_exactly_what_sequence_printed() {
    if !knocker_lab::e2e(&[]) {
        return;
    }
    let lab = Lab::new("rot");
    let config = key_config(
        "rot",
        &format!(
            "[profile.hot]\nhost = \"{}\"\nkind = \"rotating\"\nkey_file = \"k\"\nmode = \"hotp\"\n\
             counter_file = \"hot.count\"\nknocks = 4\nports = \"40000-40999\"\n\n\
             [profile.tot]\nhost = \"{}\"\nkind = \"rotating\"\nkey_file = \"k\"\nknocks = 5\n\
             ports = \"41000-41999\"\nproto = \"udp\"\ndelay_ms = 5\n",
            lab.server_v4(),
            lab.server_v6()
        ),
    );

    // hotp over IPv4 and TCP: what `sequence` shows (without using it up) is what is sent.
    let hot = printed_sequence(&config, &["hot"]);
    assert_eq!(hot.len(), 4);
    let mut expected = watch_sequence(&lab, &hot, "40000-40999");
    let out = lab.knocker(&["knock", "-q", "hot"], Some(&config.0));
    assert_success(&out);
    lab.assert_counters(&as_counters(&expected));
    assert_eq!(
        fs::read_to_string(config.0.join("hot.count")).expect("counter"),
        "1\n"
    );
    // The next knock is the next counter's sequence.
    let next = printed_sequence(&config, &["hot"]);
    assert_ne!(next, hot);

    // totp over IPv6 and UDP, at a fixed time so the step cannot change in between.
    let tot = printed_sequence(&config, &["tot", "--at", "1700000000"]);
    assert_eq!(tot.len(), 5);
    assert!(tot.iter().all(|(proto, _)| proto == "udp"));
    expected.extend(watch_sequence(&lab, &tot, "41000-41999"));
    let out = lab.knocker(
        &["knock", "-q", "tot", "--at", "1700000000"],
        Some(&config.0),
    );
    assert_success(&out);
    lab.assert_counters(&as_counters(&expected));
}

#[test]
fn an_encoded_profile_sends_its_knocks_within_the_span() {
    if !knocker_lab::e2e(&[]) {
        return;
    }
    let lab = Lab::new("enc");
    let config = key_config(
        "enc",
        &format!(
            "[profile.enc]\nhost = \"{}\"\nkind = \"encoded\"\nkey_file = \"k\"\nbase = 40000\n\
             bits = 12\nopen = [\"tcp/22\"]\nduration = 60\n\n\
             [profile.enc6]\nhost = \"{}\"\nkind = \"encoded\"\nkey_file = \"k\"\nbase = 50000\n\
             bits = 12\nproto = \"udp\"\nopen = [\"tcp/22\", \"udp/53\"]\n",
            lab.server_v4(),
            lab.server_v6()
        ),
    );
    lab.watch(&[
        ("spanother".to_string(), "tcp dport 40000-44095".to_string()),
        (
            "span".to_string(),
            "tcp dport 40000-44095 tcp flags & (syn|ack) == syn".to_string(),
        ),
        (
            "span6other".to_string(),
            "udp dport 50000-54095".to_string(),
        ),
        (
            "span6".to_string(),
            "udp dport 50000-54095 udp length 9".to_string(),
        ),
    ]);

    // IPv4, one service, 12 bits: 63 knocks, each one SYN inside the span.
    let out = lab.knocker(&["knock", "-q", "-v", "enc"], Some(&config.0));
    assert_success(&out);
    lab.assert_counters(&[("span", 63)]);

    // What was sent decodes to the profile's request, for the client's own address.
    let host = lab.server_v4();
    let ports: Vec<u16> = text(&out.stdout)
        .lines()
        .map(|l| {
            let prefix = format!("hitting tcp {host}:");
            l.strip_prefix(&prefix).expect(l).parse().expect("port")
        })
        .collect();
    let spec = EncodedSpec::new(40000, 12, Proto::Tcp).expect("spec");
    let mut reassembly = Reassembly::new(&spec);
    let messages: Vec<_> = ports
        .iter()
        .filter_map(|p| match reassembly.push(*p) {
            Push::Complete(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(messages.len(), 1);
    let key = EncodedKey::from_base64(KEY).expect("key");
    let request = encoded::decode(&key, &spec, messages[0].as_bytes())
        .expect("authentic")
        .request;
    assert_eq!(request.allow.to_string(), lab.client_v4());
    assert_eq!(request.services, [Service::tcp(22)]);
    assert_eq!(request.duration_secs, 60);

    // IPv6, two services, over UDP: 97 one-byte datagrams inside the span.
    let out = lab.knocker(&["knock", "-q", "enc6"], Some(&config.0));
    assert_success(&out);
    let v6: std::net::IpAddr = lab.server_v6().parse().expect("v6");
    let want = encoded::layout(
        &EncodedSpec::new(50000, 12, Proto::Udp).expect("spec"),
        v6,
        2,
    )
    .expect("fits")
    .knocks() as u64;
    assert_eq!(want, 97);
    lab.assert_counters(&[("span", 63), ("span6", want)]);
}
