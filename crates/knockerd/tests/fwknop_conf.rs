//! fwknopd's access.conf and fwknopd.conf as they are: Debian's files as shipped, every
//! variable, includes, errors with file:line, stanzas refused for what knockerd cannot honour,
//! the native TOML that `import-fwknop` prints, and (when run as root where Debian's fwknopd is
//! installed) fwknopd itself as the oracle for what it accepts. No root needed otherwise.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use knocker_engine::Service;
use knocker_lab::TempDir;
use knockerd::config::fwknop::{
    self, parse_fwknopd_conf, to_toml, CmdCycle, Digest, FwknopConf, FwknopdConf, Network,
};

/// 16 bytes ("abcdefghijklmnop") and 20 bytes ("qrstuvwxyz0123456789").
const ENC_B64: &str = "YWJjZGVmZ2hpamtsbW5vcA==";
const HMAC_B64: &str = "cXJzdHV2d3h5ejAxMjM0NTY3ODk=";

fn keys() -> String {
    format!("KEY_BASE64 {ENC_B64}\nHMAC_KEY_BASE64 {HMAC_B64}\n")
}

fn parse(text: &str) -> FwknopConf {
    fwknop::parse(
        Path::new("access.conf"),
        text.as_bytes(),
        &FwknopdConf::default(),
    )
    .unwrap_or_else(|e| panic!("must parse: {e}\n{text}"))
}

fn error(text: &str) -> String {
    fwknop::parse(
        Path::new("access.conf"),
        text.as_bytes(),
        &FwknopdConf::default(),
    )
    .expect_err("must be refused")
    .to_string()
}

fn net(s: &str) -> Network {
    match s.split_once('/') {
        Some((ip, len)) => Network::Net(
            ip.parse().expect("an address"),
            len.parse().expect("a prefix length"),
        ),
        None => Network::Net(s.parse().expect("an address"), 32),
    }
}

fn has(warnings: &[String], what: &str) -> bool {
    warnings.iter().any(|w| w.contains(what))
}

/// `p` relative to the working directory (`../../tmp/...`): fwknopd opens relative include
/// paths from its working directory, and so does knockerd.
fn relative_to_cwd(p: &Path) -> PathBuf {
    let cwd = std::env::current_dir().expect("cwd");
    let ups = cwd
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    let mut r = PathBuf::new();
    for _ in 0..ups {
        r.push("..");
    }
    r.push(p.strip_prefix("/").expect("absolute"));
    r
}

#[test]
fn debian_access_conf_as_shipped() {
    if let Ok(installed) = std::fs::read_to_string("/etc/fwknop/access.conf") {
        if installed.contains("KEY_BASE64          __CHANGEME__") {
            assert_eq!(
                installed, DEBIAN_ACCESS_CONF,
                "Debian's file changed: update the copy"
            );
        }
    }
    // fwknopd refuses the file as shipped, and so does knockerd, at the same line
    let line = DEBIAN_ACCESS_CONF
        .lines()
        .position(|l| l.starts_with("KEY_BASE64"))
        .unwrap()
        + 1;
    let e = error(DEBIAN_ACCESS_CONF);
    assert!(
        e.starts_with(&format!(
            "access.conf:{line}: KEY_BASE64 is still __CHANGEME__"
        )),
        "{e}"
    );
    assert!(e.contains("fwknop --key-gen"), "{e}");

    // with the keys filled in, as an admin does it
    let filled: String = DEBIAN_ACCESS_CONF
        .lines()
        .map(|l| match l.split_whitespace().next() {
            Some("KEY_BASE64") => format!("KEY_BASE64          {ENC_B64}\n"),
            Some("HMAC_KEY_BASE64") => format!("HMAC_KEY_BASE64     {HMAC_B64}\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    let c = parse(&filled);
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
    assert!(c.refused.is_empty());
    assert_eq!(c.spa_port, 62201);
    assert_eq!(c.max_age, Some(120));
    let [s] = c.stanzas.as_slice() else {
        panic!("one stanza: {:?}", c.stanzas)
    };
    let source_line = DEBIAN_ACCESS_CONF
        .lines()
        .position(|l| l.starts_with("SOURCE"))
        .unwrap()
        + 1;
    assert_eq!((s.line, s.number), (source_line, 1));
    assert_eq!(s.sources, [Network::Any]);
    assert_eq!(s.destinations, [Network::Any]);
    assert!(s.open_ports.is_empty() && s.restrict_ports.is_empty());
    assert_eq!(s.enc_key.as_slice(), b"abcdefghijklmnop");
    assert_eq!(
        s.hmac_key.as_deref().map(Vec::as_slice),
        Some(&b"qrstuvwxyz0123456789"[..])
    );
    assert_eq!(s.hmac_digest, Digest::Sha256);
    assert_eq!((s.fw_access_timeout, s.max_fw_timeout), (30, 300));
    assert_eq!(s.access_expire, None);
    assert_eq!(s.require_username, None);
    assert!(!s.require_source_address);
    assert_eq!(s.cmd_cycle, None);
}

#[test]
fn debian_fwknopd_conf_as_shipped() {
    if let Ok(installed) = std::fs::read_to_string("/etc/fwknop/fwknopd.conf") {
        let untouched = installed
            .lines()
            .all(|l| l.trim().is_empty() || l.starts_with('#'));
        if untouched {
            assert_eq!(
                installed, DEBIAN_FWKNOPD_CONF,
                "Debian's file changed: update the copy"
            );
        }
    }
    let f = parse_fwknopd_conf(Path::new("fwknopd.conf"), DEBIAN_FWKNOPD_CONF.as_bytes())
        .expect("parses");
    assert_eq!(
        f,
        FwknopdConf {
            file: Some(PathBuf::from("fwknopd.conf")),
            ..FwknopdConf::default()
        }
    );
    // the commented values are fwknopd's defaults: uncommenting them changes nothing
    let uncommented = DEBIAN_FWKNOPD_CONF
        .replace("#PCAP_FILTER ", "PCAP_FILTER ")
        .replace("#ENABLE_SPA_PACKET_AGING ", "ENABLE_SPA_PACKET_AGING ")
        .replace("#MAX_SPA_PACKET_AGE ", "MAX_SPA_PACKET_AGE ");
    let g = parse_fwknopd_conf(Path::new("fwknopd.conf"), uncommented.as_bytes()).expect("parses");
    assert_eq!((g.spa_port, g.max_age), (62201, Some(120)));
    assert!(g.warnings.is_empty(), "{:#?}", g.warnings);
}

#[test]
fn every_variable() {
    let text = format!(
        "SOURCE 10.0.0.0/8, 192.168.1.7,ANY
DESTINATION 192.0.2.1, 198.51.100.0/255.255.255.0
OPEN_PORTS tcp/22, udp/1194
RESTRICT_PORTS tcp/23
{keys}HMAC_DIGEST_TYPE SHA512
ENCRYPTION_MODE CBC
FW_ACCESS_TIMEOUT 45
MAX_FW_TIMEOUT 600
ACCESS_EXPIRE_EPOCH 4102444800
REQUIRE_USERNAME alice
REQUIRE_SOURCE_ADDRESS Y
ENABLE_CMD_EXEC N

SOURCE: 203.0.113.9
KEY my secret key
HMAC_KEY hmac key;comment
HMAC_DIGEST_TYPE md5
ACCESS_EXPIRE 12/31/2099
REQUIRE_SOURCE yes
CMD_CYCLE_OPEN /usr/local/bin/open $IP $PORT
CMD_CYCLE_CLOSE /usr/local/bin/close $IP
CMD_CYCLE_TIMER 60

SOURCE 198.51.100.1
{keys}CMD_CYCLE_OPEN /usr/local/bin/forever $SRC
CMD_CYCLE_CLOSE NONE
",
        keys = keys()
    );
    let c = parse(&text);
    assert!(c.refused.is_empty(), "{:?}", c.refused);
    let [a, b, cc] = c.stanzas.as_slice() else {
        panic!("three stanzas")
    };
    assert_eq!(
        (a.line, a.number, b.line, b.number, cc.number),
        (1, 1, 16, 2, 3)
    );
    assert_eq!(
        a.sources,
        [net("10.0.0.0/8"), net("192.168.1.7"), Network::Any]
    );
    assert_eq!(a.destinations, [net("192.0.2.1"), net("198.51.100.0/24")]);
    assert_eq!(a.open_ports, [Service::tcp(22), Service::udp(1194)]);
    assert_eq!(a.restrict_ports, [Service::tcp(23)]);
    assert_eq!(a.hmac_digest, Digest::Sha512);
    assert_eq!((a.fw_access_timeout, a.max_fw_timeout), (45, 600));
    assert_eq!(a.access_expire, Some(4_102_444_800));
    assert_eq!(a.require_username.as_deref(), Some("alice"));
    assert!(a.require_source_address);
    assert_eq!(a.cmd_cycle, None);

    assert_eq!(b.sources, [net("203.0.113.9")]);
    assert_eq!(b.enc_key.as_slice(), b"my secret key");
    assert_eq!(
        b.hmac_key.as_deref().map(Vec::as_slice),
        Some(&b"hmac key"[..]),
        "';' ends a value"
    );
    assert!(has(
        &b.warnings,
        "access.conf:18: HMAC_KEY: fwknopd ignores everything from the ';' on"
    ));
    assert_eq!(b.hmac_digest, Digest::Md5);
    assert_eq!(
        b.access_expire,
        Some(4_102_358_400),
        "midnight UTC, 2099-12-31"
    );
    assert!(has(
        &b.warnings,
        "knockerd takes midnight UTC (2099-12-31 00:00:00 UTC)"
    ));
    assert!(
        b.require_source_address,
        "REQUIRE_SOURCE is a synonym, Y is any value starting with y"
    );
    assert_eq!(
        b.cmd_cycle,
        Some(CmdCycle {
            open: "/usr/local/bin/open $IP $PORT".into(),
            close: Some("/usr/local/bin/close $IP".into()),
            timer: 60,
        })
    );
    assert_eq!(
        cc.cmd_cycle,
        Some(CmdCycle {
            open: "/usr/local/bin/forever $SRC".into(),
            close: None,
            timer: 0,
        })
    );
    // what the daemon asks a stanza
    assert!(a.allows(&[Service::tcp(22)]));
    assert!(a.allows(&[Service::udp(1194), Service::tcp(22)]));
    assert!(!a.allows(&[Service::tcp(22), Service::tcp(80)]));
    assert!(!a.allows(&[]));
    assert!(b.allows(&[Service::tcp(8443)]), "no OPEN_PORTS: anything");
    assert_eq!(
        (a.open_for(0), a.open_for(100), a.open_for(10_000)),
        (45, 100, 600)
    );
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(a.matches_addresses(ip("10.1.2.3"), ip("192.0.2.1")));
    assert!(!a.matches_addresses(ip("10.1.2.3"), ip("192.0.2.2")));
    assert!(
        a.matches_addresses(ip("2001:db8::1"), ip("198.51.100.9")),
        "ANY matches IPv6"
    );
    assert!(!b.matches_addresses(ip("203.0.113.10"), ip("192.0.2.1")));
}

#[test]
fn keys_and_debug() {
    let c = parse(&format!("SOURCE ANY\n{}", keys()));
    let s = &c.stanzas[0];
    let debug = format!("{s:?} {c:?}");
    assert!(debug.contains("<16 bytes, redacted>"), "{debug}");
    for secret in ["abcdefghijklmnop", "qrstuvwxyz", ENC_B64, HMAC_B64] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    // fwknop's base64: padding optional, a lone last character ignored
    let c = parse("SOURCE ANY\nKEY_BASE64 YWJjZGVmZw\nHMAC_KEY_BASE64 cXJzdHV2dw==x\n");
    assert_eq!(c.stanzas[0].enc_key.as_slice(), b"abcdefg");
    assert_eq!(
        c.stanzas[0].hmac_key.as_deref().map(Vec::as_slice),
        Some(&b"qrstuvw"[..])
    );
    // the later key line counts
    let c = parse(&format!("SOURCE ANY\nKEY first\n{}", keys()));
    assert_eq!(c.stanzas[0].enc_key.as_slice(), b"abcdefghijklmnop");
    assert!(has(
        &c.warnings,
        "access.conf:3: the encryption key was already set at line 2"
    ));
}

#[test]
fn sources_cidrs_any_and_inet_aton() {
    let c = parse(&format!(
        "SOURCE 192.168.10.0/24,10.1.1.123\n{k}\nSOURCE 172.16.5.4/255.240.0.0\n{k}\nSOURCE any\n{k}\nSOURCE 010.0.0.1, 10.2\n{k}",
        k = keys()
    ));
    let sources: Vec<Vec<Network>> = c.stanzas.iter().map(|s| s.sources.clone()).collect();
    assert_eq!(
        sources,
        [
            vec![net("192.168.10.0/24"), net("10.1.1.123")],
            vec![net("172.16.0.0/12")],
            vec![Network::Any],
            vec![net("8.0.0.1"), net("10.0.0.2")],
        ]
    );
    assert!(
        has(&c.warnings, "fwknopd reads \"010.0.0.1\" as 8.0.0.1"),
        "{:#?}",
        c.warnings
    );
    assert!(has(&c.warnings, "fwknopd reads \"10.2\" as 10.0.0.2"));
}

#[test]
fn what_fwknopd_accepts_runs_with_warnings() {
    let k = keys();
    let c = parse(&format!(
        "OPEN_PORTS tcp/1\r
SOURCE ANY\r
{k}KEY my key # not a comment  \r
key lowercase\r
FOO bar\r
RESTRICT_PORTS udp/1-5\r
OPEN_PORTS tcp/22,tcp/22\r
FW_ACCESS_TIMEOUT 500\r
MAX_FW_TIMEOUT 100\r
ENABLE_CMD_SUDO_EXEC Y\r
CMD_EXEC_USER root\r
GPG_HOME_DIR /\r
ACCESS_EXPIRE_EPOCH 0\r
CMD_CYCLE_TIMER 5\r
"
    ));
    let w = &c.warnings;
    let s = &c.stanzas[0];
    assert!(has(
        w,
        "access.conf:1: `OPEN_PORTS` comes before any SOURCE line: fwknopd ignores it"
    ));
    assert_eq!(
        s.enc_key.as_slice(),
        b"my key # not a comment  ",
        "CRLF: the CR ends the value"
    );
    assert!(has(w, "access.conf:5: KEY: the value contains \" #\""));
    assert!(has(w, "access.conf:5: KEY: the value ends with whitespace"));
    assert!(has(w, "access.conf:6: unknown variable `key` is ignored, as fwknopd ignores it (variable names are case-sensitive: write KEY)"));
    assert!(has(w, "access.conf:7: unknown variable `FOO` is ignored"));
    assert_eq!(s.restrict_ports, [Service::udp(1)]);
    assert!(has(w, "access.conf:8: RESTRICT_PORTS: fwknopd reads \"udp/1-5\" as udp/1 and ignores the rest (fwknopd has no port ranges)"));
    assert_eq!(s.open_ports, [Service::tcp(22)]);
    assert!(has(
        w,
        "access.conf:9: OPEN_PORTS: tcp/22 is listed twice (fwknopd counts matches"
    ));
    assert_eq!((s.fw_access_timeout, s.max_fw_timeout), (100, 100));
    assert!(has(w, "access.conf:10: FW_ACCESS_TIMEOUT 500 is above MAX_FW_TIMEOUT 100: fwknopd says it honours MAX_FW_TIMEOUT but grants 500 s"));
    assert!(has(
        w,
        "access.conf:12: ENABLE_CMD_SUDO_EXEC has no effect without ENABLE_CMD_EXEC Y"
    ));
    assert!(has(w, "access.conf:13: CMD_EXEC_USER has no effect"));
    assert!(has(
        w,
        "access.conf:14: GPG_HOME_DIR has no effect without GPG_DECRYPT_PW"
    ));
    assert_eq!(s.access_expire, None);
    assert!(has(
        w,
        "access.conf:15: ACCESS_EXPIRE_EPOCH 0 means no expiry"
    ));
    assert!(has(
        w,
        "access.conf:16: CMD_CYCLE_TIMER has no effect without CMD_CYCLE_OPEN"
    ));

    let c = parse(&format!(
        "SOURCE ANY\n{k}FW_ACCESS_TIMEOUT 0\nACCESS_EXPIRE_EPOCH 1000\n"
    ));
    assert_eq!(c.stanzas[0].fw_access_timeout, 30);
    assert!(has(
        &c.warnings,
        "access.conf:4: FW_ACCESS_TIMEOUT 0 means fwknopd's default, 30 s"
    ));
    assert!(has(
        &c.warnings,
        "access.conf:5: the stanza expired at 1970-01-01 00:16:40 UTC"
    ));
}

#[test]
fn errors_name_the_file_the_line_and_the_fix() {
    let k = keys();
    let long = format!("SOURCE ANY\nKEY {}\n", "x".repeat(1100));
    let cases: Vec<(String, &str)> = vec![
        ("SOURCE ANY\nKEY __CHANGEME__\n".into(), "access.conf:2: KEY is still __CHANGEME__"),
        (format!("SOURCE ANY\n{k}HMAC_KEY_BASE64 __changeme__\n"), "access.conf:4: HMAC_KEY_BASE64 is still __CHANGEME__"),
        ("SOURCE ANY\nKEY_BASE64 a!!\n".into(), "access.conf:2: KEY_BASE64 is not base64"),
        (format!("SOURCE ANY\nKEY_BASE64 {ENC_B64}  \n"), "access.conf:2: KEY_BASE64 is not base64 (it ends with whitespace"),
        (format!("SOURCE ANY\n{k}   \n"), "access.conf:4: a line of only spaces"),
        ("SOURCE ANY\nKEY\n".into(), "access.conf:2: `KEY` has no value"),
        ("source ANY\nKEY x\n".into(), "access.conf: no SOURCE line"),
        (format!("SOURCE ANY\nHMAC_KEY_BASE64 {HMAC_B64}\n"), "access.conf:1: stanza SOURCE ANY: no keys"),
        ("SOURCE ANY\nKEY same\nHMAC_KEY same\nSOURCE 1.2.3.4\n".into(), "access.conf:1: stanza SOURCE ANY: the encryption key and the HMAC key are identical"),
        (format!("SOURCE 10.0.0.0/33\n{k}"), "access.conf:1: SOURCE: invalid prefix length \"33\""),
        (format!("SOURCE 10.0.0.0/24 ,10.1.1.1\n{k}"), "no space after a prefix length"),
        (format!("SOURCE 2001:db8::/32\n{k}"), "fwknopd 2.6.10 reads only IPv4"),
        (format!("SOURCE 1.1.1.1,\n{k}"), "access.conf:1: SOURCE: \"\" is not an IPv4 address"),
        (format!("SOURCE ANY\n{k}DESTINATION 10.0.0.300\n"), "access.conf:4: DESTINATION: \"10.0.0.300\" is not an IPv4 address"),
        (format!("SOURCE ANY\n{k}OPEN_PORTS tcp/65536\n"), "access.conf:4: OPEN_PORTS: invalid port in \"tcp/65536\""),
        (format!("SOURCE ANY\n{k}OPEN_PORTS tcp/abc\n"), "fwknopd would silently read it as port 0"),
        (format!("SOURCE ANY\n{k}OPEN_PORTS 22\n"), "\"22\" is not proto/port"),
        (format!("SOURCE ANY\n{k}OPEN_PORTS tcp/22,\n"), "access.conf:4: OPEN_PORTS"),
        (format!("SOURCE ANY\n{k}FW_ACCESS_TIMEOUT 30s\n"), "access.conf:4: FW_ACCESS_TIMEOUT \"30s\" is not a whole number (fwknopd would silently read it as 30)"),
        (format!("SOURCE ANY\n{k}FW_ACCESS_TIMEOUT -5\n"), "not in fwknopd's range 0 to 8388608"),
        (format!("SOURCE ANY\n{k}MAX_FW_TIMEOUT 8388609\n"), "access.conf:4: MAX_FW_TIMEOUT 8388609 is not in fwknopd's range"),
        (format!("SOURCE ANY\n{k}HMAC_DIGEST_TYPE sha224\n"), "access.conf:4: HMAC_DIGEST_TYPE \"sha224\" must be one of"),
        (format!("SOURCE ANY\n{k}HMAC_DIGEST_TYPE sha256 \n"), "with nothing after it"),
        (format!("SOURCE ANY\n{k}ENCRYPTION_MODE pcbc\n"), "access.conf:4: ENCRYPTION_MODE \"pcbc\" is unknown"),
        (format!("SOURCE ANY\n{k}ACCESS_EXPIRE 2030-12-31\n"), "access.conf:4: ACCESS_EXPIRE \"2030-12-31\" is not a date: write MM/DD/YYYY"),
        (format!("SOURCE ANY\n{k}ACCESS_EXPIRE_EPOCH abc\n"), "access.conf:4: ACCESS_EXPIRE_EPOCH \"abc\" is not a whole number"),
        (format!("SOURCE ANY\n{k}CMD_CYCLE_OPEN /bin/true\n"), "access.conf:1: stanza SOURCE ANY: CMD_CYCLE_OPEN without CMD_CYCLE_CLOSE"),
        (format!("SOURCE ANY\n{k}CMD_CYCLE_OPEN /bin/true\nCMD_CYCLE_CLOSE /bin/false\n"), "needs CMD_CYCLE_TIMER"),
        (format!("SOURCE ANY\n{k}CMD_CYCLE_TIMER 0\n"), "access.conf:4: CMD_CYCLE_TIMER 0 is not in fwknopd's range 1 to 8388608"),
        (format!("SOURCE ANY\n{k}CMD_EXEC_USER no-such-user-knocker\n"), "access.conf:4: CMD_EXEC_USER \"no-such-user-knocker\" is not a user on this system"),
        (format!("SOURCE ANY\n{k}GPG_HOME_DIR /no/such/dir\n"), "access.conf:4: GPG_HOME_DIR \"/no/such/dir\" is not a directory"),
        (format!("SOURCE ANY\n{k}GPG_DECRYPT_PW secret\n"), "access.conf:4: GnuPG signatures are checked by default"),
        (format!("SOURCE ANY\n{k}FORCE_SNAT 192.0.2.1\n"), "access.conf:1: stanza SOURCE ANY: FORCE_SNAT/FORCE_MASQUERADE requires either FORCE_NAT or FORWARD_ALL"),
        (format!("SOURCE ANY\n{k}FORCE_NAT 192.0.2.1\n"), "access.conf:4: FORCE_NAT \"192.0.2.1\": fwknopd needs <IP> <PORT>"),
        ("SOURCE ANY\n%include /no/such/file.conf\n".into(), "/no/such/file.conf: cannot read"),
        (long, "access.conf:2: the line is 1104 bytes long"),
    ];
    for (text, want) in cases {
        let e = error(&text);
        assert!(e.contains(want), "want {want:?}\n got {e}\n for {text:?}");
        for secret in ["abcdefghijklmnop", ENC_B64, HMAC_B64, "same"] {
            assert!(!e.contains(secret), "{e} shows a key");
        }
    }
}

#[test]
fn a_stanza_knockerd_cannot_honour_is_refused_whole_and_the_others_run() {
    let k = keys();
    let c = parse(&format!(
        "SOURCE 10.0.0.1
{k}GPG_DECRYPT_PW secret
GPG_REMOTE_ID ABCD1234
SOURCE 10.0.0.2
{k}FORCE_NAT 192.168.1.2 22
ENABLE_CMD_EXEC Y
SOURCE 10.0.0.3
{k}ENCRYPTION_MODE legacy
SOURCE 10.0.0.4
{k}HMAC_DIGEST_TYPE sha3_256
SOURCE 10.0.0.5
KEY_BASE64 {ENC_B64}
SOURCE 10.0.0.6
{k}FORWARD_ALL Y
FORCE_MASQUERADE Y
DISABLE_DNAT Y
SOURCE 10.0.0.0/255.0.255.0
{k}SOURCE ANY
{k}OPEN_PORTS tcp/22
"
    ));
    let [s] = c.stanzas.as_slice() else {
        panic!("one stanza runs: {:#?}", c.stanzas)
    };
    assert_eq!(
        (s.number, s.line, s.sources.as_slice()),
        (8, 30, &[Network::Any][..])
    );
    let refused: Vec<(usize, usize)> = c.refused.iter().map(|r| (r.number, r.line)).collect();
    assert_eq!(
        refused,
        [(1, 1), (2, 6), (3, 11), (4, 15), (5, 19), (6, 21), (7, 27)]
    );
    let reasons = |n: usize| c.refused[n - 1].reasons.join("\n");
    assert!(
        reasons(1).contains("access.conf:4: GnuPG"),
        "{}",
        reasons(1)
    );
    assert!(reasons(2).contains("access.conf:9: FORCE_NAT without OPEN_PORTS"));
    assert!(reasons(2).contains(
        "access.conf:10: ENABLE_CMD_EXEC Y: fwknopd runs any command a key holder sends"
    ));
    // and names what to write instead, in both formats
    assert!(
        reasons(2).contains("CMD_CYCLE_OPEN /path/to/command $SRC with CMD_CYCLE_CLOSE NONE")
            && reasons(2).contains("start_command = [\"/path/to/command\", \"%IP%\"]"),
        "{}",
        reasons(2)
    );
    assert!(
        reasons(3).contains("access.conf:14: ENCRYPTION_MODE legacy: knockerd decrypts only CBC")
    );
    assert!(reasons(4).contains("access.conf:18: HMAC_DIGEST_TYPE sha3_256"));
    assert!(reasons(5).contains("access.conf:19: no HMAC_KEY or HMAC_KEY_BASE64"));
    assert!(reasons(5).contains("--use-hmac"));
    for v in ["FORWARD_ALL", "DISABLE_DNAT"] {
        assert!(
            reasons(6).contains(&format!("{v} Y: knockerd does not")),
            "{}",
            reasons(6)
        );
    }
    assert!(
        reasons(7).contains(
            "access.conf:27: SOURCE: \"10.0.0.0/255.0.255.0\" has the netmask 255.0.255.0"
        ),
        "{}",
        reasons(7)
    );
    assert!(has(&c.warnings, "access.conf:19: stanza #5 (SOURCE 10.0.0.5) is refused, knockerd does not run it: access.conf:19: no HMAC_KEY"));

    // nothing left to run: refused, with every reason
    let e = error(&format!(
        "SOURCE 10.0.0.1\nKEY_BASE64 {ENC_B64}\nSOURCE 10.0.0.2\n{k}ENABLE_CMD_EXEC Y\n"
    ));
    assert!(
        e.starts_with("access.conf: no stanza knockerd can run"),
        "{e}"
    );
    assert!(
        e.contains("stanza #1 (access.conf:1): access.conf:1: no HMAC_KEY"),
        "{e}"
    );
    assert!(
        e.contains("stanza #2 (access.conf:3): access.conf:6: ENABLE_CMD_EXEC Y"),
        "{e}"
    );
}

#[test]
fn enable_cmd_exec_beside_a_command_cycle_runs_with_a_warning() {
    let c = parse(&format!(
        "SOURCE ANY\n{}ENABLE_CMD_EXEC Y\nCMD_CYCLE_OPEN nft add element inet filter fwknop_ssh_v4 {{ $SRC timeout 60s }};\nCMD_CYCLE_CLOSE nft delete element inet filter fwknop_ssh_v4 {{ $SRC }};\nCMD_CYCLE_TIMER 60\n",
        keys()
    ));
    assert!(c.refused.is_empty(), "{:?}", c.refused);
    assert!(
        has(
            &c.warnings,
            "access.conf:4: ENABLE_CMD_EXEC Y has no effect in a stanza with CMD_CYCLE_OPEN"
        ),
        "{:?}",
        c.warnings
    );
    let cc = c.stanzas[0].cmd_cycle.as_ref().expect("a command cycle");
    assert_eq!(
        cc.open,
        "nft add element inet filter fwknop_ssh_v4 { $SRC timeout 60s }"
    );
}

#[test]
fn missing_hmac_is_refused_with_the_fix() {
    let c = parse(&format!(
        "SOURCE 192.0.2.0/24\nKEY_BASE64 {ENC_B64}\nSOURCE ANY\n{}",
        keys()
    ));
    assert_eq!(c.stanzas.len(), 1);
    let r = &c.refused[0];
    assert_eq!(
        (r.number, r.line, r.source.as_str()),
        (1, 1, "192.0.2.0/24")
    );
    assert_eq!(r.reasons, ["access.conf:1: no HMAC_KEY or HMAC_KEY_BASE64: knockerd never decrypts a packet it has not authenticated (fwknopd 2.6.10 would, with only a warning); add HMAC_KEY_BASE64 (`fwknop --key-gen` makes one) and give clients --use-hmac with that key. To switch daemons before the clients, --fwknop-allow-legacy runs such stanzas as fwknopd does, with warnings (weaker: SECURITY.md, \"fwknop's legacy mode\")"]);
    // an HMAC key that decodes to nothing is no HMAC key
    let empty_hmac = format!(
        "SOURCE 1.2.3.4\nKEY_BASE64 {ENC_B64}\nHMAC_KEY_BASE64 =\nSOURCE ANY\n{}",
        keys()
    );
    let c = parse(&empty_hmac);
    assert_eq!(c.refused.len(), 1);

    // opted in (--fwknop-allow-legacy): both run, the legacy ones with a warning each
    for text in [
        format!(
            "SOURCE 192.0.2.0/24\nKEY_BASE64 {ENC_B64}\nSOURCE ANY\n{}",
            keys()
        ),
        empty_hmac,
    ] {
        let c = fwknop::parse_with(
            Path::new("access.conf"),
            text.as_bytes(),
            &FwknopdConf::default(),
            fwknop::Legacy::Allow,
        )
        .expect("parses");
        assert!(c.refused.is_empty(), "{:?}", c.refused);
        assert_eq!(c.stanzas.len(), 2);
        assert_eq!(c.stanzas[0].hmac_key, None);
        assert!(c.stanzas[1].hmac_key.is_some());
        assert!(
            format!("{:?}", c.stanzas[0]).contains("none (legacy mode)"),
            "{:?}",
            c.stanzas[0]
        );
        let legacy: Vec<&String> = c
            .warnings
            .iter()
            .filter(|w| w.contains("LEGACY MODE"))
            .collect();
        assert_eq!(legacy.len(), 1, "{:?}", c.warnings);
        assert!(
            legacy[0].starts_with("access.conf:2: LEGACY MODE"),
            "{legacy:?}"
        );
        // GnuPG stays refused, opt-in or not
        let gpg = fwknop::parse_with(
            Path::new("access.conf"),
            format!(
                "SOURCE ANY\nGPG_ALLOW_NO_PW Y\nGPG_DISABLE_SIG Y\nSOURCE ANY\n{}",
                keys()
            )
            .as_bytes(),
            &FwknopdConf::default(),
            fwknop::Legacy::Allow,
        )
        .expect("parses");
        assert_eq!(gpg.refused.len(), 1);
        assert!(
            gpg.refused[0].reasons[0].contains("give the stanza KEY_BASE64 and HMAC_KEY_BASE64"),
            "{:?}",
            gpg.refused
        );
    }
}

#[test]
fn includes_relative_absolute_folders_and_keys() {
    let d = TempDir::new("fwknop-conf-includes");
    let k = keys();
    d.private("d/a.conf", &format!("SOURCE 6.6.6.6\n{k}"));
    d.private("d/x.conf", &format!("SOURCE 5.5.5.5\n{k}"));
    d.private("d/y.config", &format!("SOURCE 7.7.7.7\n{k}"));
    d.private("d/z.conf.bak", "not read\n");
    d.private("d/notes.txt", "not read\n");
    let deep = d.private("deep.conf", &format!("SOURCE 3.3.3.3\n{k}"));
    let b = d.private(
        "b.conf",
        &format!("SOURCE 2.2.2.2\n{k}%include {}\n", deep.display()),
    );
    let c_rel = relative_to_cwd(&d.private("c.conf", &format!("SOURCE 4.4.4.4\n{k}")));
    let root = d.private(
        "access.conf",
        &format!(
            "%include_folder {}/d/\nSOURCE 1.1.1.1\nKEY_BASE64 {ENC_B64}\n%include {}\nHMAC_KEY_BASE64 {HMAC_B64}\n%include {}\n",
            d.0.display(),
            b.display(),
            c_rel.display()
        ),
    );
    let c = fwknop::load(&root, None).unwrap_or_else(|e| panic!("{e}"));
    let order: Vec<(String, usize)> = c
        .stanzas
        .iter()
        .map(|s| (s.sources[0].to_string(), s.number))
        .collect();
    assert_eq!(
        order,
        [
            ("6.6.6.6".into(), 1),
            ("5.5.5.5".into(), 2),
            ("7.7.7.7".into(), 3),
            ("1.1.1.1".into(), 4),
            ("2.2.2.2".into(), 5),
            ("3.3.3.3".into(), 6),
            ("4.4.4.4".into(), 7),
        ]
    );
    // after the %include, the including file's stanza goes on (its HMAC key came after it)
    assert_eq!(
        c.stanzas[3].hmac_key.as_deref().map(Vec::as_slice),
        Some(&b"qrstuvwxyz0123456789"[..])
    );
    assert_eq!(c.stanzas[0].file, d.0.join("d/a.conf"));
    assert!(has(&c.warnings, "knockerd reads its 3 files in name order"));
    assert!(has(
        &c.warnings,
        "a relative path is opened from the working directory"
    ));

    // at most three files deep
    let e4 = d.private("e4.conf", &format!("SOURCE 9.9.9.4\n{k}"));
    let e3 = d.private(
        "e3.conf",
        &format!("SOURCE 9.9.9.3\n{k}%include {}\n", e4.display()),
    );
    let e2 = d.private("e2.conf", &format!("%include {}\n", e3.display()));
    let e1 = d.private(
        "e1.conf",
        &format!("SOURCE ANY\n{k}%include {}\n", e2.display()),
    );
    let e = fwknop::load(&e1, None).expect_err("too deep").to_string();
    assert!(
        e.starts_with(&format!(
            "{}:4: %include nests more than 3 files deep",
            e3.display()
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!("included by %include at {}:1", e2.display())),
        "{e}"
    );

    // %include_keys: only keys; a stanza whose keys file is missing is skipped, as in fwknopd
    let kf = d.private("keys.conf", &format!("{k}OPEN_PORTS tcp/1\n"));
    let root = d.private(
        "k.conf",
        &format!(
            "SOURCE 1.1.1.1\nOPEN_PORTS tcp/22\n%include_keys {}\nFW_ACCESS_TIMEOUT 77\nSOURCE 1.1.1.2\n%include_keys {}/missing\nFW_ACCESS_TIMEOUT 88\nSOURCE 1.1.1.3\n{k}",
            kf.display(),
            d.0.display()
        ),
    );
    let c = fwknop::load(&root, None).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(String, usize, u64)> = c
        .stanzas
        .iter()
        .map(|s| (s.sources[0].to_string(), s.number, s.fw_access_timeout))
        .collect();
    assert_eq!(got, [("1.1.1.1".into(), 1, 77), ("1.1.1.3".into(), 2, 30)]);
    assert_eq!(c.stanzas[0].open_ports, [Service::tcp(22)]);
    assert!(has(
        &c.warnings,
        "OPEN_PORTS is ignored: a keys file (%include_keys) sets only keys"
    ));
    assert!(has(
        &c.warnings,
        "(SOURCE 1.1.1.2) is skipped, as fwknopd skips it"
    ));
}

#[test]
fn files_on_disk() {
    let d = TempDir::new("fwknop-conf-disk");
    let access = d.private("access.conf", &format!("SOURCE ANY\n{}", keys()));
    let c = fwknop::load(&access, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    std::fs::set_permissions(&access, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = fwknop::load(&access, None).unwrap();
    assert!(has(
        &c.warnings,
        "holds keys but others can read it (mode 644): chmod 600 it"
    ));
    // a fwknopd.conf beside it that was not given
    let conf = d.private("fwknopd.conf", "PCAP_FILTER udp port 5000;\n");
    let c = fwknop::load(&access, None).unwrap();
    assert_eq!(c.spa_port, 62201);
    assert!(has(
        &c.warnings,
        "fwknopd.conf exists but was not given with --fwknopd-conf"
    ));
    let c = fwknop::load(&access, Some(&conf)).unwrap();
    assert_eq!(c.spa_port, 5000);
    assert_eq!(c.fwknopd_conf.as_deref(), Some(conf.as_path()));
    assert!(!has(&c.warnings, "was not given"));
    let e = fwknop::load(&d.0.join("nope.conf"), None).expect_err("missing");
    assert!(e.to_string().contains("nope.conf: cannot read"), "{e}");
    let e = fwknop::load(&d.0, None).expect_err("a directory");
    assert!(e.to_string().contains("is not a regular file"), "{e}");
}

fn fwknopd(text: &str) -> FwknopdConf {
    parse_fwknopd_conf(Path::new("fwknopd.conf"), text.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn fwknopd_conf_settings() {
    let f = fwknopd("PCAP_FILTER udp dst port 5000;\nMAX_SPA_PACKET_AGE 60;\n");
    assert_eq!((f.spa_port, f.max_age), (5000, Some(60)));
    assert!(f.warnings.is_empty(), "{:?}", f.warnings);
    let f = fwknopd("PCAP_FILTER udp port 5000 and host 192.0.2.1\n");
    assert_eq!(f.spa_port, 5000);
    assert!(has(
        &f.warnings,
        "fwknopd.conf:1: knockerd takes only the port from PCAP_FILTER"
    ));
    let f = fwknopd("MAX_SPA_PACKET_AGE 60\nENABLE_SPA_PACKET_AGING no\n");
    assert_eq!(f.max_age, None);
    let f = fwknopd("PCAP_FILTER udp port 1\nENABLE_UDP_SERVER Y\nUDPSERV_PORT 7777\n");
    assert_eq!(f.spa_port, 7777);
    assert!(has(
        &f.warnings,
        "fwknopd.conf:1: PCAP_FILTER is not used: ENABLE_UDP_SERVER is Y"
    ));
    let f = fwknopd("PCAP_INTF ens3;\nENABLE_IPT_FORWARDING Y\nENABLE_DIGEST_PERSISTENCE N\n");
    assert_eq!(f.interface.as_deref(), Some("ens3"));
    assert!(f.nat_enabled);
    assert!(has(
        &f.warnings,
        "fwknopd.conf:3: ENABLE_DIGEST_PERSISTENCE is N"
    ));
    // fwknopd.conf takes no ':' after names, and ignores bad lines
    let f = fwknopd("PCAP_FILTER: udp port 1\n   \n");
    assert_eq!(f.spa_port, 62201);
    assert!(has(
        &f.warnings,
        "fwknopd.conf:1: unknown variable `PCAP_FILTER:`"
    ));
    assert!(has(&f.warnings, "fwknopd.conf:2: not `VARIABLE value`"));
    // fwknopd's one $VARIABLE expansion
    let f = fwknopd("FWKNOP_CONF_DIR /etc/fwknop\nACCESS_FILE $FWKNOP_CONF_DIR/access.conf\n");
    assert!(
        has(
            &f.warnings,
            "ACCESS_FILE /etc/fwknop/access.conf is not used"
        ),
        "{:?}",
        f.warnings
    );

    for (text, want) in [
        ("PCAP_FILTER udp dst portrange 10000-65535\n", "fwknopd.conf:1: PCAP_FILTER \"udp dst portrange 10000-65535\": a port range"),
        ("PCAP_FILTER tcp port 80\n", "SPA over TCP is not supported"),
        ("\nPCAP_FILTER udp port 1 or udp port 2\n", "fwknopd.conf:2: PCAP_FILTER \"udp port 1 or udp port 2\": it names more than one port"),
        ("MAX_SPA_PACKET_AGE 0\n", "fwknopd.conf:1: MAX_SPA_PACKET_AGE 0 is not in fwknopd's range 1 to 100000"),
        ("MAX_SPA_PACKET_AGE 60s\n", "fwknopd.conf:1: MAX_SPA_PACKET_AGE \"60s\" is not a whole number (fwknopd would silently read it as 60)"),
        ("ENABLE_UDP_SERVER Y\nUDPSERV_PORT 70000\n", "fwknopd.conf:2: UDPSERV_PORT 70000"),
    ] {
        let e = parse_fwknopd_conf(Path::new("fwknopd.conf"), text.as_bytes())
            .expect_err(text)
            .to_string();
        assert!(e.contains(want), "want {want:?}\n got {e}");
    }
}

#[test]
fn fwknopd_conf_applies_to_the_access_file() {
    let d = TempDir::new("fwknop-conf-both");
    let k = keys();
    let access = d.private(
        "access.conf",
        &format!("SOURCE 10.0.0.1\n{k}FORCE_NAT 192.168.1.2 22\nSOURCE ANY\n{k}"),
    );
    let plain = d.private(
        "plain.conf",
        "PCAP_FILTER udp port 40000\nENABLE_SPA_PACKET_AGING N\n",
    );
    let e = fwknop::load(&access, Some(&plain))
        .expect_err("FORCE_NAT needs forwarding")
        .to_string();
    assert!(
        e.contains(
            "access.conf:4: FORCE_NAT requires ENABLE_IPT_FORWARDING or ENABLE_IPT_LOCAL_NAT"
        ),
        "{e}"
    );
    let nat = d.private(
        "nat.conf",
        "PCAP_FILTER udp port 40000\nENABLE_IPT_FORWARDING Y\nENABLE_SPA_PACKET_AGING N\n",
    );
    let c = fwknop::load(&access, Some(&nat)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (c.spa_port, c.max_age, c.stanzas.len(), c.refused.len()),
        (40000, None, 1, 1)
    );
    assert!(has(&c.warnings, "ENABLE_SPA_PACKET_AGING is N"));
    assert!(has(&c.warnings, "nat.conf:2: ENABLE_IPT_FORWARDING is Y"));
    let toml = to_toml(&c);
    assert!(toml.contains("port = 40000\n"));
    assert!(!toml.contains("max_age ="), "{toml}");
    assert!(toml.contains("# warning: fwknopd.conf turns packet aging off"));
}

#[test]
fn import_prints_native_toml_without_keys() {
    let k = keys();
    let c = parse(&format!(
        "SOURCE 10.0.0.0/8, ANY
{k}OPEN_PORTS tcp/22
RESTRICT_PORTS udp/53
ACCESS_EXPIRE_EPOCH 4102444800
REQUIRE_USERNAME alice
REQUIRE_SOURCE_ADDRESS Y

SOURCE 192.0.2.7
KEY my secret key
HMAC_KEY my hmac key
HMAC_DIGEST_TYPE sha1
FW_ACCESS_TIMEOUT 10
MAX_FW_TIMEOUT 60
DESTINATION 198.51.100.1

SOURCE 192.0.2.8
KEY_BASE64 {ENC_B64}

SOURCE 192.0.2.9
{k}CMD_CYCLE_OPEN /usr/bin/ipset add allow $IP
CMD_CYCLE_CLOSE /usr/bin/ipset del allow $SRC
CMD_CYCLE_TIMER 40

SOURCE 192.0.2.10
{k}CMD_CYCLE_OPEN /usr/local/bin/open $IP $PORT
CMD_CYCLE_CLOSE NONE
OPEN_PORTS tcp/22
"
    ));
    let toml = to_toml(&c);
    for want in [
        "[door.fwknop-1]\n# fwknopd's stanza #1: access.conf:1\nkind = \"fwknop\"\nport = 62201\nsources = [\"10.0.0.0/8\", \"any\"]\n",
        "open = [\"tcp/22\"]\nrestrict = [\"udp/53\"]\nkey_file = \"/etc/knocker/fwknop-1.fwknop.key\"\nhmac_key_file = \"/etc/knocker/fwknop-1.fwknop.hmac.key\"\n",
        "# note: write the keys to these two files (mode 0600) before using this door: the encryption key is KEY_BASE64 at access.conf:2,\n# note: the HMAC key is HMAC_KEY_BASE64 at access.conf:3. They are not copied here.\n",
        "hmac_digest = \"sha256\"\nopen_for = 30\nmax_open_for = 300\nmax_age = \"120s\"\n",
        "# note: the door never opens after 2100-01-01 00:00:00 UTC.\nexpire = 4102444800\nrequire_username = \"alice\"\n",
        "require_source_address = true\n",
        "# note: these services are protected: dropped for everyone without a grant.",
        "[door.fwknop-2]\n",
        "sources = [\"192.0.2.7\"]\n# note: DESTINATION: only packets sent to these addresses of this host count.\ndestinations = [\"198.51.100.1\"]\n",
        "# note: OPEN_PORTS is not set: fwknopd opened whatever the client asked for (minus RESTRICT_PORTS).\n# note: A native door must list what it opens: put those services here.\nopen = []\n",
        "the encryption key is KEY at access.conf:11,",
        "hmac_digest = \"sha1\"\nopen_for = 10\nmax_open_for = 60\n",
        "# warning: stanza #3 (access.conf:18, SOURCE 192.0.2.8) is not imported:\n# warning:   access.conf:18: no HMAC_KEY",
        "[door.fwknop-4]\n",
        "start_command = [\"/usr/bin/ipset\", \"add\", \"allow\", \"%IP%\"]\nstop_command = [\"/usr/bin/ipset\", \"del\", \"allow\", \"%IP%\"]\n",
        "# note: fwknopd (and knockerd --fwknop-access) run CMD_CYCLE_CLOSE after the client's timeout then.\nstop_after = 40\n",
        "[door.fwknop-5]\n",
        "# note: OPEN_PORTS [\"tcp/22\"]: fwknopd 2.6.10 did not check it for a command cycle; knockerd does.\n# note: The commands below are the firewall, as in fwknopd: `protect = false`, knockerd drops nothing.\nopen = [\"tcp/22\"]\nprotect = false\n",
        "# note: CMD_CYCLE_CLOSE NONE: no stop command.\nstart_command = [\"/usr/local/bin/open\", \"%IP%\", \"%PORT%\"]\n",
    ] {
        assert!(toml.contains(want), "missing:\n{want}\nin:\n{toml}");
    }
    assert!(!toml.contains("[door.fwknop-3]"));
    for secret in [
        "abcdefghijklmnop",
        "qrstuvwxyz",
        ENC_B64,
        HMAC_B64,
        "my secret key",
        "my hmac key",
    ] {
        assert!(!toml.contains(secret), "{secret} printed:\n{toml}");
    }
    let value: toml::Value = toml::from_str(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let doors = value.get("door").and_then(|d| d.as_table()).expect("doors");
    assert_eq!(doors.len(), 4);
    for (name, door) in doors {
        assert_eq!(
            door.get("kind").and_then(|k| k.as_str()),
            Some("fwknop"),
            "{name}"
        );
    }
}

/// fwknopd itself decides what it accepts: run Debian's fwknopd (fwknop-server) on the same
/// files, as root (it needs its run directory). Missing either fails, as every e2e test does.
#[test]
fn fwknopd_agrees_on_what_it_refuses() {
    if !knocker_lab::needs(true, &["fwknopd"]) {
        return;
    }
    let bin = knocker_lab::which("fwknopd").expect("checked above");
    let d = TempDir::new("fwknop-conf-oracle");
    let conf = d.private("fwknopd.conf", "");
    let k = keys();
    // (access.conf, fwknopd accepts it, knockerd runs it)
    let cases: Vec<(String, bool, bool)> = vec![
        (DEBIAN_ACCESS_CONF.to_string(), false, false),
        (format!("SOURCE ANY\n{k}"), true, true),
        (
            format!("SOURCE: 10.0.0.0/8, 192.168.1.1 ;c\n{k}OPEN_PORTS tcp/22, udp/53 \n"),
            true,
            true,
        ),
        (format!("SOURCE 10.1.2.3/255.255.0.0\n{k}"), true, true),
        (
            format!("SOURCE 010.0.0.1\n{k}RESTRICT_PORTS udp/1-5\n"),
            true,
            true,
        ),
        (format!("SOURCE ANY\n{k}   \n"), false, false),
        (format!("SOURCE ANY\n{k}KEY\n"), false, false),
        ("source ANY\nKEY x\n".into(), false, false),
        (
            format!("SOURCE ANY\nHMAC_KEY_BASE64 {HMAC_B64}\n"),
            false,
            false,
        ),
        ("SOURCE ANY\nKEY same\nHMAC_KEY same\n".into(), false, false),
        (format!("SOURCE 10.0.0.0/33\n{k}"), false, false),
        (format!("SOURCE 10.0.0.0/24 ,1.1.1.1\n{k}"), false, false),
        (format!("SOURCE 10.0.0.0/8 ,1.1.1.1\n{k}"), true, true),
        (format!("SOURCE 2001:db8::1\n{k}"), false, false),
        (format!("SOURCE ANY ,1.1.1.1\n{k}"), false, false),
        (
            format!("SOURCE ANY\n{k}OPEN_PORTS tcp/65536\n"),
            false,
            false,
        ),
        (format!("SOURCE ANY\n{k}OPEN_PORTS tcp/22,\n"), false, false),
        (
            format!("SOURCE ANY\n{k}OPEN_PORTS tcp/0000000000000000000000000000022\n"),
            false,
            false,
        ),
        (
            format!("SOURCE ANY\n{k}FW_ACCESS_TIMEOUT 8388609\n"),
            false,
            false,
        ),
        (
            format!("SOURCE ANY\n{k}HMAC_DIGEST_TYPE sha256 \n"),
            false,
            false,
        ),
        (
            format!("SOURCE ANY\n{k}HMAC_DIGEST_TYPE SHA384\n"),
            true,
            true,
        ),
        (
            format!("SOURCE ANY\n{k}ENCRYPTION_MODE pcbc\n"),
            false,
            false,
        ),
        (
            format!("SOURCE ANY\n{k}ACCESS_EXPIRE 2030-12-31\n"),
            false,
            false,
        ),
        (
            format!("SOURCE ANY\n{k}ACCESS_EXPIRE 13/45/2030\n"),
            true,
            true,
        ),
        (
            format!("SOURCE ANY\n{k}CMD_CYCLE_OPEN /bin/true\n"),
            false,
            false,
        ),
        (
            format!("SOURCE ANY\n{k}CMD_CYCLE_OPEN /bin/true $IP\nCMD_CYCLE_CLOSE NONE\n"),
            true,
            true,
        ),
        (
            format!("SOURCE ANY\n{k}CMD_EXEC_USER no-such-user-knocker\n"),
            false,
            false,
        ),
        (
            format!("SOURCE ANY\n{k}KEY_BASE64 __CHANGEME__\n"),
            false,
            false,
        ),
        (format!("SOURCE ANY\n{k}KEY __changeme__\n"), false, false),
        // accepted by fwknopd, but no stanza knockerd can run
        (format!("SOURCE ANY\nKEY_BASE64 {ENC_B64}\n"), true, false),
        (format!("SOURCE ANY\n{k}ENABLE_CMD_EXEC Y\n"), true, false),
        // inert next to a command cycle (incoming_spa() runs the cycle first), so it runs
        (
            format!("SOURCE ANY\n{k}ENABLE_CMD_EXEC Y\nCMD_CYCLE_OPEN /usr/bin/logger $SRC\nCMD_CYCLE_CLOSE NONE\n"),
            true,
            true,
        ),
        (
            format!("SOURCE ANY\n{k}ENCRYPTION_MODE legacy\n"),
            true,
            false,
        ),
        // accepted by fwknopd as garbage, refused by knockerd with the line
        (
            format!("SOURCE ANY\n{k}FW_ACCESS_TIMEOUT 30s\n"),
            true,
            false,
        ),
        (format!("SOURCE ANY\n{k}OPEN_PORTS tcp/abc\n"), true, false),
    ];
    // Each case's verdicts side by side: fwknopd's, as it gives it now, against knockerd's. The
    // table records where they are expected to differ (knockerd stricter); knockerd must never
    // run a stanza fwknopd refuses, whatever the table says.
    let mut wrong = Vec::new();
    for (i, (text, fwknopd_ok, knockerd_ok)) in cases.iter().enumerate() {
        let access = d.private(&format!("a{i}.conf"), text);
        let out = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .arg("-a")
            .arg(&access)
            .arg("--exit-parse-config")
            .output()
            .expect("run fwknopd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("Invalid access.conf file path"),
            "fwknopd could not read case {i}'s file: {stderr}"
        );
        let theirs = out.status.success();
        let ours = fwknop::load(&access, None);
        if !theirs && ours.is_ok() {
            wrong.push(format!(
                "case {i} {text:?}: knockerd runs what fwknopd refuses: {stderr}"
            ));
        }
        if (theirs, ours.is_ok()) != (*fwknopd_ok, *knockerd_ok) {
            wrong.push(format!(
                "case {i} {text:?}: (fwknopd, knockerd) accept {:?}, the table says {:?}\n\
                 fwknopd: {stderr}\nknockerd: {ours:?}",
                (theirs, ours.is_ok()),
                (*fwknopd_ok, *knockerd_ok)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn line() -> impl Strategy<Value = String> {
        let var = prop_oneof![
            Just("SOURCE"),
            Just("DESTINATION"),
            Just("OPEN_PORTS"),
            Just("RESTRICT_PORTS"),
            Just("KEY"),
            Just("KEY_BASE64"),
            Just("HMAC_KEY"),
            Just("HMAC_KEY_BASE64"),
            Just("HMAC_DIGEST_TYPE"),
            Just("ENCRYPTION_MODE"),
            Just("FW_ACCESS_TIMEOUT"),
            Just("MAX_FW_TIMEOUT"),
            Just("ACCESS_EXPIRE"),
            Just("ACCESS_EXPIRE_EPOCH"),
            Just("REQUIRE_USERNAME"),
            Just("REQUIRE_SOURCE_ADDRESS"),
            Just("ENABLE_CMD_EXEC"),
            Just("CMD_CYCLE_OPEN"),
            Just("CMD_CYCLE_CLOSE"),
            Just("CMD_CYCLE_TIMER"),
            Just("GPG_DECRYPT_PW"),
            Just("GPG_REMOTE_ID"),
            Just("FORCE_NAT"),
            Just("FORCE_SNAT"),
            Just("FORCE_MASQUERADE"),
            Just("FORWARD_ALL"),
            Just("%include_keys"),
            Just("#"),
            Just("source"),
            Just("SOURCE:"),
        ];
        let val = prop_oneof![
            Just("ANY".to_string()),
            Just(ENC_B64.to_string()),
            Just(HMAC_B64.to_string()),
            Just("10.0.0.0/8, 192.168.1.1".to_string()),
            Just("tcp/22,udp/53".to_string()),
            Just("/nonexistent/keys".to_string()),
            "[0-9./,: a-zA-Z_$;#=+-]{0,40}",
        ];
        (
            var,
            val,
            prop_oneof![Just(""), Just(" "), Just("\t"), Just("\r")],
        )
            .prop_map(|(k, v, end)| format!("{k} {v}{end}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn the_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1500)) {
            let _ = fwknop::parse(Path::new("a.conf"), &bytes, &FwknopdConf::default());
            let _ = parse_fwknopd_conf(Path::new("f.conf"), &bytes);
        }

        #[test]
        fn stanzas_never_panic_and_import_is_valid_toml(lines in prop::collection::vec(line(), 0..24)) {
            let text = lines.join("\n");
            if let Ok(c) = fwknop::parse(Path::new("a.conf"), text.as_bytes(), &FwknopdConf::default()) {
                prop_assert!(!c.stanzas.is_empty());
                let toml = to_toml(&c);
                prop_assert!(toml::from_str::<toml::Value>(&toml).is_ok(), "{}", toml);
            }
            let _ = parse_fwknopd_conf(Path::new("f.conf"), text.as_bytes());
        }
    }
}

/// Debian's /etc/fwknop/access.conf (fwknop-server 2.6.10-16), as installed, byte for byte.
const DEBIAN_ACCESS_CONF: &str = r#"##############################################################################
#
# File:    access.conf
#
# Purpose: This file defines how fwknopd will modify firewall access
#          controls for specific IPs/networks.  It gets installed in
#          the fwknop config directory and is consulted by fwknopd on
#          startup or a reconfiguration signal.
#
# Note:    This file supports multiple entries (stanzas) for different
#          levels of access based on the SOURCE of the incoming SPA packet.
#          If multiple stanzas are used, you should make sure they are
#          entered in order from most specific to the more general SOURCE
#          specifications as the first matching SOURCE wins.
#
#          For example, a SOURCE that is a specific IP address should come
#          before a SOURCE that specifies multiple IP's or a Subnet.  The
#          SOURCE: "ANY" (if used) should be the last one.
#
#          At least one stanza MUST be defined.
#
##############################################################################
#
### Directives ###

# %include /etc/fwknop/myInlcudeFile.conf
#
# This processes the access.conf stanzas from an additional file.
# Complete stanzas should be contained within each file.

# %include_folder /etc/fwknop/myFolder.d
#
# This processes all the *.conf files in the specified directory.

# %include_keys /home/user/fwknop_keys.conf
#
# This directive loads the encryption and HMAC keys from an external file.
# Any other commands in the stanza must come before the %include_keys
# directive.

### Commands ###

# SOURCE                <IP,..,IP/NET,..,NET/ANY>
#
# This defines the source address from which a SPA packet will be accepted.
# Every  authorization stanza in this file must start  with  the  SOURCE
# keyword. Networks should be specified in CIDR  (e.g. "192.168.10.0/24")
# notation. Individual IP addresses can be specified as well.
#
# Also, multiple IP’s and/or networks can be defined as a comma-separated
# list  (e.g. "192.168.10.0/24,10.1.1.123").
#
# The string "ANY" is also accepted if a valid authorization packet should
# be honored from any source IP.
#

# DESTINATION                <IP,..,IP/NET,..,NET/ANY>
#
# This defines the destination address for which a SPA packet will be accepted.
# Networks should be specified in CIDR  (e.g. "192.168.10.0/24") notation. 
# Individual IP addresses can be specified as well.
#
# Also, multiple IP’s and/or networks can be defined as a comma-separated
# list  (e.g. "192.168.10.0/24,10.1.1.123").
#
# The string "ANY" is also accepted if a valid authorization packet should
# be honored to any destination IP.
#

# OPEN_PORTS            <proto/port>, ..., <proto/port
#
# Define a set of ports and protocols (tcp or udp) that are allowed to be
# opened if a valid SPA packet is received and its access request matches
# one of the entries here.
#
# If this entry is not set, then fwknopd will attempt to honor the request
# specified in the SPA data.
#

# RESTRICT_PORTS        <proto/port>, ..., <proto/port>
#
# Define a set of ports and protocols (tcp or udp) that are *NOT* allowed
# to be opened even if a valid SPA packet is received.
#

# KEY                   <password>
#
# Define the key used for decrypting an incoming SPA packet that is using
# its built-in encryption (e.g. not GPG).  This variable is required for
# all non-GPG-encrypted SPA packets.
#

# FW_ACCESS_TIMEOUT     <seconds>
#
# Define the length of time access will be granted by fwknop through the
# firewall after a valid SPA packet is received from the source IP address
# that matches this stanza's SOURCE.
#
# If FW_ACCESS_TIMEOUT is not set then a default timeout of 30 seconds will
# automatically be set.
#

# MAX_FW_TIMEOUT     <seconds>
#
# Define the maximum length of time access will be granted by fwknop through
# the firewall after a valid SPA packet is received. This is mostly useful to
# ensure that clients using the --fw-timeout argument do not grant themselves
# unduly long access.
#
# If MAX_FW_TIMEOUT is not set then a default timeout of 300 seconds (five
# minutes) will automatically be set.
#

# ENABLE_CMD_EXEC       <Y/N>
#
# This specifies whether or not fwknopd will accept complete commands that
# are contained within a SPA packet.  Any such command will be executed as
# user specified using the CMD_EXEC_USER parameter by the fwknopd server.
# If not set here, the default is "N".
#

# CMD_EXEC_USER         <username>
#
# This specifies the user that will execute commands contained within a SPA
# packet.  If not specified, fwknopd will execute it as the user it is
# running as (most likely root). Setting this to a non-root user is highly
# recommended.
#

# REQUIRE_USERNAME      <username>
#
# Require a specific username from the client system as encoded in the SPA
# data.  This variable is optional and if not specified, the username data
# in the SPA data is ignored.
#

# REQUIRE_SOURCE_ADDRESS    <Y/N>
#
# Force all SPA packets to contain a real IP address within the encrypted
# data.  This makes it impossible to use the "-s" command line argument
# on the fwknop client command line, so either "-R" has to be used to
# automatically resolve the external address (if the client is behind a
# NAT) or the client must know the external IP.  If not set here, the
# default is "N".
#

# GPG_HOME_DIR          <path>
#
# Define the path to the GnuPG directory to be used by fwknopd.  If this
# keyword is not specified here, then fwknopd will default to using the
# "/root/.gnupg" directory for the server key(s).
#

# GPG_DECRYPT_ID        <keyID>
#
# Define a GnuPG key ID to use for decrypting SPA messages that have been
# encrypted by an fwknop client using GPG.  This keyword is required for
# authentication that is based on gpg keys.  The gpg key ring on the client
# must have imported and signed the fwknopd server key, and vice versa.
#
# It is ok to use a sensitive personal gpg key on the client, but each
# fwknopd server should have its own gpg key that is generated specifically
# for fwknop communications.  The reason for this is that this decryption
# password within this file.
#
# Note that you can use either keyID or its corresponding email address.
#
# For more information on using fwknop with GnuPG keys, see the following
# link: http://www.cipherdyne.org/fwknop/docs/gpghowto.html
#

# GPG_DECRYPT_PW        <decrypt password>
#
# Specify the decryption password for the gpg key defined by the
# GPG_DECRYPT_ID above.  This is a required field for gpg-based
# authentication.
#

# GPG_REQUIRE_SIG       <Y/N>
#
# With this setting set to 'Y',  fwknopd check all GPG-encrypted SPA
# messages for a signature (signed by the sender's key).  If the incoming
# message is not signed, the decryption process will fail.  If not set, the
# default is 'N'.

# GPG_IGNORE_SIG_VERIFY_ERROR   <Y/N>
#
# Setting this will allow fwknopd to accept incoming GPG-encrypted packets
# that are signed, but the signature did not pass verification (i.e. the
# signer key was expired, etc.).  This setting only applies if the
# GPG_REQUIRE_SIG is also set to 'Y'.

# GPG_REMOTE_ID         <keyID,...,keyID>
#
# Define a list of gpg key ID’s that are required to have signed any
# incoming SPA messages that have been encrypted with the fwknopd server
# key.  This ensures that the verification of the remote user is accomplished
# via a strong cryptographic mechanism. This setting only applies if the
# GPG_REQUIRE_SIG is set to 'Y'.
#

#### fwknopd access.conf stanzas ###

SOURCE              ANY
KEY_BASE64          __CHANGEME__
HMAC_KEY_BASE64     __CHANGEME__

# If you want to use GnuPG keys then define the following variables
#
#GPG_HOME_DIR           /homedir/path/.gnupg
#GPG_DECRYPT_ID         ABCD1234
#GPG_DECRYPT_PW         __CHANGEME__

# If you want to require GPG signatures:
#GPG_REQUIRE_SIG                    Y
#GPG_IGNORE_SIG_VERIFY_ERROR        N
#GPG_REMOTE_ID                      1234ABCD
"#;

/// Debian's /etc/fwknop/fwknopd.conf (fwknop-server 2.6.10-16), as installed, byte for byte:
/// every setting is commented out, so fwknopd runs on its defaults.
const DEBIAN_FWKNOPD_CONF: &str = r#"#
##############################################################################
#
#         [+] fwknopd - Firewall Knock Operator Daemon [+]
#
# This is the configuration file for fwknopd, the Firewall Knock Operator
# daemon.  The primary authentication and authorization mechanism offered
# by fwknop is known as Single Packet Authorization (SPA).  More information
# about SPA can be found at: http://www.cipherdyne.org/fwknop/docs/SPA.html
#
# There are no access control directives in this file.  All access
# control directives are located in the file "/etc/fwknop/access.conf".
# You will need to edit the access.conf file in order for fwknop to function
# correctly.
#
# Most of these can remain commented out unless you need to override the
# default setting.
#
# It is also important to note that there are some subtle (and some not
# so subtle) differences between this configuration file, its parameters
# and valid values and the configuration file used by the legacy Perl
# version of fwknopd.  Please pay careful attention to the format and
# values used in this file if you are migrating from the legacy Perl
# version.
#
##############################################################################
#

#
# Define the default verbosity level the fwknop server should use.
# A value of "0" is the default verbosity level. Setting it up to "1" or
# higher will allow debugging messages to be displayed.
#
#VERBOSE                     0;

# Define the ethernet interface on which we will sniff packets.
# Default if not set is eth0.  The '-i <intf>' command line option overrides
# the PCAP_INTF setting.
#
#PCAP_INTF                   eth0;

# By default fwknopd does not put the pcap interface into promiscuous mode.
# Set this to 'Y' to enable promiscuous sniffing.
#
#ENABLE_PCAP_PROMISC         N;

# Define the filter used for PCAP modes; we default to udp port 62201.
# However, if an fwknop client uses the --rand-port option to send the
# SPA packet over a random port, then this variable should be updated to
# something like "udp dst portrange 10000-65535;".
# Default is "udp port 62201".
#
#PCAP_FILTER                 udp port 62201;

### Netfilter Queue (NFQ) Parameters ###
#
# These settings apply only if fwknopd was compiled with libnetfilter_queue
# support (configure with --enable-libnetfilter_queue). If this was not
# enabled, leave these commented out.
#
# Uncomment and set to "Y" to capture via libnetfilter_queue. This is the
# only option that must be set in order for NFQ capture.  The remaining
# options have reasonable default values.
# 
#ENABLE_NFQ_CAPTURE          Y;

# If you want to limit capture to a specific network interface, specify it
# here. If NFQ is enabled and this is left commented out, SPA packets will
# be captured on any/all network interfaces (which is the default).
#
#NFQ_INTERFACE               eth0;

# Specify the UDP port for incoming SPA packets (default is 62201).
#
#NFQ_PORT                    62201;

# Specify the iptable table for NFQ use (should stay the default of "mangle").
#
#NFQ_TABLE                   mangle;

# The name for the chain we will use for NFQ (default is "FWKNOP_NFQ").
#NFQ_CHAIN

# Specify the NFQ queue number.  The default is "1".
#
#NFQ_QUEUE_NUMBER            1;
#
### End of Netfilter Queue (NFQ) Options ###

# This instructs fwknopd to not honor SPA packets that have an old time
# stamp.  The value for "old" is defined by the MAX_SPA_PACKET_AGE variable.
# If ENABLE_SPA_PACKET_AGING is set to "N", fwknopd will not use the client
# time stamp at all.
#
#ENABLE_SPA_PACKET_AGING     Y;

# Defines the maximum age (in seconds) that an SPA packet will be accepted.
# This requires that the client system is in relatively close time
# synchronization with the fwknopd server system (NTP is good).  The default
# age is two minutes.
#
#MAX_SPA_PACKET_AGE          120;

# Track digest sums associated with previous fwknop process.  This allows
# digest sums to remain persistent across executions of fwknop.
#
#ENABLE_DIGEST_PERSISTENCE   Y;

# Sets the number of packets that are processed when the pcap_dispatch()
# call is made.  The default is zero, since this allows fwknopd to process
# as many packets as possible in the corresponding callback where the SPA
# handling routine is called for packets that pass a set of prerequisite
# checks.  However, if fwknopd is running on a platform with an old
# version of libpcap, it may be necessary to change this value to a positive
# non-zero integer.  More information can be found in the pcap_dispatch(3)
# man page.
#PCAP_DISPATCH_COUNT            0;

# Sets the number of microseconds to pass as an argument to usleep() in
# the pcap loop.  The default is 100000 microseconds, or 1/10th of a second.
#PCAP_LOOP_SLEEP                100000;

# Specify the the maximum number of bytes to sniff per frame - 1500
# is a good default
#
#MAX_SNIFF_BYTES             1500;

# If GPG keys are used instead of a Rijndael symmetric key, this is
# the default GPG keys directory.  Note that each access stanza in
# fwknop access.conf can specify its own GPG directory to override
# this default.
#
#GPG_HOME_DIR        /root/.gnupg;

# Set the default GPG path when GPG is used for SPA encryption and
# authentication.
#
#GPG_EXE            /usr/bin/gpg;

# Allow fwknopd to acquire SPA data from HTTP requests (generated with the
# fwknop client in --HTTP mode).  Note that the PCAP_FILTER variable would
# need to be updated when this is enabled to sniff traffic over TCP/80
# connections.
#
#ENABLE_SPA_OVER_HTTP        N;

# Allow fwknopd to resolve hostnames in NAT access messages.
#ENABLE_NAT_DNS              Y;

# Allows the use of the X-Forwarded-for header from a captured packet as the
# Source IP. This can happen when using SPA through an HTTP proxy.
#
#ENABLE_X_FORWARDED_FOR      N;

# Instead of appending new firewall rules to the bottom of the chain, this
# option inserts rules at the top of the chain. This causes newly created
# rules to have precedence over older ones.
#
#ENABLE_RULE_PREPEND         N;

# Enable the fwknopd TCP server.  This is a "dummy" TCP server that will
# accept TCP connection requests on the specified TCPSERV_PORT.
# If set to "Y", fwknopd will fork off a child process to listen for and
# accept incoming TCP requests.  This server only accepts the
# request.  It does not otherwise communicate. This is only to allow the
# incoming SPA over TCP packet which is detected via PCAP. The connection
# is closed after 1 second regardless.
# Note that fwknopd still only gets its data via pcap, so the filter
# defined by PCAP_FILTER needs to be updated to include this TCP port.
#
#ENABLE_TCP_SERVER           N;
#TCPSERV_PORT                62201;

# Set/override the locale (via the LC_ALL locale category).  Leave this
# entry commented out to  have fwknopd honor the default system locale.
#
#LOCALE                      C;

# Override syslog identity and facility (the defaults are usually ok).
# The SYSLOG_FACILITY variable can be set to one of LOG_LOCAL{0-7}
# or LOG_DAEMON (the default).
#
#SYSLOG_IDENTITY             fwknopd;
#SYSLOG_FACILITY             LOG_DAEMON;

# Define this to have fwknopd read pcap data from a file instead of sniffing
# a live interface.  This is usually only used for debugging purposes, and is
# equivalent to the '-r <pcap file>' command line option.
#
#PCAP_FILE                   /some/path/to/file.pcap;

# This variable controls whether fwknopd is permitted to sniff SPA packets
# regardless of whether they are received on the sniffing interface or sent
# from the sniffing interface.  In the latter case, this can be useful to have
# fwknopd sniff SPA packets that are forwarded through a system and destined
# for a different network.  If the sniffing interface is the egress interface
# for such packets, then this variable will need to be set to "Y" in order for
# fwknopd to see them.  The default is "N" so that fwknopd only looks for SPA
# packets that are received on the sniffing interface (note that this is
# independent of promiscuous mode).
#
# ENABLE_PCAP_ANY_DIRECTION     N;

# Controls whether fwknopd will set the destination field on the firewall
# rule to the destination address specified on the incoming SPA packet.
# This is useful for interfaces with multiple IP addresses hosting separate
# services. If ENABLE_IPT_OUTPUT is set to "Y", the source field of
# the firewall rule is set. FORWARD and SNAT rules are not affected however,
# DNAT rules will also have their destination field set. The default is
# "N", which sets the destination field to 0.0.0.0/0 (any).
#
# ENABLE_DESTINATION_RULE       Y;

##############################################################################
# NOTE: The following EXTERNAL_CMD functionality is not yet implemented.
#       This is a possible future feature of fwknopd.
#
# The following four variables control whether a global set of "open" and
# "close" commands are executed after receiving a valid SPA packet.  These
# variables are used only if FIREWALL_TYPE is set to "external_cmd", but
# the same variables can also exist within the access.conf file so that
# mixed deployments are possible - that is, some SPA packets will operate
# as usual and result in firewall commands being executed, but others will
# result in the commands defined by these variables (in access.conf) being
# executed.
#     The "open" and "close" commands might be manually supplied firewall
# commands, and both support variable substitution of any of the variables
# in the access.conf file with "$VAR".  Also, three special variables are
# supported: $SRC, $PORT, and $PROTO, which are derived from actual values
# from within valid SPA packets (as opposed to $SOURCE from access.conf
# which may contain a list of networks instead of a single IP address).
# Here are some examples:
#     - Execute a specific iptables command on behalf of the source IP
#     in a valid SPA packet to add a new ACCEPT rule, and execute
#     another command (to delete the same rule after a timeout):
#         EXTERNAL_CMD_OPEN       iptables -A INPUT -s $SRC -j ACCEPT
#         EXTERNAL_CMD_CLOSE      iptables -D INPUT -s $SRC -j ACCEPT
#     - Execute a custom binary with the SOURCE and OPEN_PORTS variables
#     from the access.conf file as input on the command line, and after
#     a timeout execute a different program but use the real SPA source
#     IP:
#         EXTERNAL_CMD_OPEN       /path/someprog $SOURCE $OPEN_PORTS
#         EXTERNAL_CMD_OPEN       /path/otherprog $SRC
#
#ENABLE_EXTERNAL_CMDS        N;
#EXTERNAL_CMD_OPEN           __NONE__;
#EXTERNAL_CMD_CLOSE          __NONE__;
#EXTERNAL_CMD_ALARM          30;

# if EXTERNAL_CMD_OPEN is used above, then the following two variables can
# be used to enforce a prefix on variable substitutions - useful if there
# are any naming conflicts with the external script and command line
# arguments that are named the same as the variables to be substituted.
#
#ENABLE_EXT_CMD_PREFIX       N;
#EXT_CMD_PREFIX              FWKNOP_;

##############################################################################
# Parameters specific to firewalld:

# Flush all existing rules in the fwknop chains at fwknop start time and/or
# exit time. They default to Y and it is a recommended setting for both.
#
#FLUSH_FIREWD_AT_INIT           Y;
#FLUSH_FIREWD_AT_EXIT           Y;
#

# Allow SPA clients to request access to services through a firewalld
# firewall instead of just to it (i.e. access through the FWKNOP_FORWARD
# chain instead of the INPUT chain).
#
#ENABLE_FIREWD_FORWARDING       N;

# Allow SPA clients to request access to a local socket via NAT.  This still
# puts an ACCEPT rule into the FWKNOP_INPUT chain, but a different port is
# translated via DNAT rules to the real one.  So, the user would do
# "ssh -p <port>" to access the local service (see the --NAT-local and
# --NAT-rand-port on the fwknop client command line).
#
#ENABLE_FIREWD_LOCAL_NAT        Y;

# By default, if forwarding access is enabled (see the ENABLE_FIREWD_FORWARDING
# variable above), then fwknop creates DNAT rules for incoming connections,
# but does not also complement these rules with SNAT rules at the same time.
# In some situations, internal systems may not have a route back out for the
# source address of the incoming connection, so it is necessary to also
# apply SNAT rules so that the internal systems see the IP of the internal
# interface where fwknopd is running.  This functionality is only enabled
# when ENABLE_FIREWD_SNAT is set to "Y", and by default SNAT rules are built
# with the MASQUERADE target (since then the internal IP does not have to be
# defined here in the fwknop.conf file), but if you want fwknopd to use the
# SNAT target then also define an IP address with the SNAT_TRANSLATE_IP
# variable.
#
#ENABLE_FIREWD_SNAT             N;
#SNAT_TRANSLATE_IP           __CHANGEME__;

# Add ACCEPT rules to the FWKNOP_OUTPUT chain. This is usually only useful
# if there are no state tracking rules to allow connection responses out and
# the OUTPUT chain has a default-drop stance.
#
#ENABLE_FIREWD_OUTPUT           N;

# fwknopd adds allow rules to a custom firewalld chain "FWKNOP_INPUT".
# This chain is called from the INPUT chain, and by default no other
# firewalld chains are used.  However, additional chains can be added
# (say, if access needs to be allowed through the local system via the
# FORWARD chain) by altering the FIREWD_FORWARD_ACCESS variable below.
# For a discussion of the format followed by these keywords, read on:
#
# Specify chain names to which firewalld blocking rules will be
# added with the FIREWD_INPUT_ACCESS and FIREWD_FORWARD_ACCESS keyword.
# The format for these variables is:
#
#   <Target>,<Table>,<From_chain>,<Jump_rule_position>,\
#       <To_chain>,<Rule_position>.
#
# "Target":
#   Can be any legitimate firewalld target, but should usually just be "DROP".
#
# "Table":
#   Can be any firewalld table, but the default is "filter".
#
# "From_chain":
#   Is the chain from which packets will be jumped.
#
# "Jump_rule_position":
#   Defines the position within the From_chain where the jump rule is added.
#
# "To_chain":
#   Is the chain to which packets will be jumped. This is the main chain
#   where fwknop rules are added.
#
# "Rule_position":
#   Defines the position where rules are added within the To_chain.
#
#FIREWD_INPUT_ACCESS        ACCEPT, filter, INPUT, 1, FWKNOP_INPUT, 1;

# The FIREWD_OUTPUT_ACCESS variable is only used if ENABLE_FIREWD_OUTPUT is enabled
#
#FIREWD_OUTPUT_ACCESS       ACCEPT, filter, OUTPUT, 1, FWKNOP_OUTPUT, 1;

# The FIREWD_FORWARD_ACCESS variable is only used if ENABLE_FIREWD_FORWARDING is
# enabled.
#
#FIREWD_FORWARD_ACCESS      ACCEPT, filter, FORWARD, 1, FWKNOP_FORWARD, 1;
#FIREWD_DNAT_ACCESS         DNAT, nat, PREROUTING, 1, FWKNOP_PREROUTING, 1;

# The FIREWD_SNAT_ACCESS variable is not used unless both ENABLE_FIREWD_SNAT and
# ENABLE_FIREWD_FORWARDING are enabled.  Also, the external static IP must be
# set with the SNAT_TRANSLATE_IP variable.  The default is to use the
# FIREWD_MASQUERADE_ACCESS variable.
#
#FIREWD_SNAT_ACCESS         SNAT, nat, POSTROUTING, 1, FWKNOP_POSTROUTING, 1;
#FIREWD_MASQUERADE_ACCESS   MASQUERADE, nat, POSTROUTING, 1, FWKNOP_MASQUERADE, 1;

# The ENABLE_COMMENT_MATCH_CHECK variable instructs fwknopd to check for the
# firewalld 'comment' match at start up.  If it's not found, then fwknopd will
# exit and throw an error.  This variable is enabled by default, but can be
# disabled if you want fwknopd to run without being sure that the comment match
# is available (not recommended, since the comment match enables new SPA rules
# to be timed out).
#
#ENABLE_FIREWD_COMMENT_CHECK        Y;

##############################################################################
# Parameters specific to iptables:

# Flush all existing rules in the fwknop chains at fwknop start time and/or
# exit time. They default to Y and it is a recommended setting for both.
#
#FLUSH_IPT_AT_INIT           Y;
#FLUSH_IPT_AT_EXIT           Y;
#

# Allow SPA clients to request access to services through an iptables
# firewall instead of just to it (i.e. access through the FWKNOP_FORWARD
# chain instead of the INPUT chain).
#
#ENABLE_IPT_FORWARDING       N;

# Allow SPA clients to request access to a local socket via NAT.  This still
# puts an ACCEPT rule into the FWKNOP_INPUT chain, but a different port is
# translated via DNAT rules to the real one.  So, the user would do
# "ssh -p <port>" to access the local service (see the --NAT-local and
# --NAT-rand-port on the fwknop client command line).
#
#ENABLE_IPT_LOCAL_NAT        Y;

# By default, if forwarding access is enabled (see the ENABLE_IPT_FORWARDING
# variable above), then fwknop creates DNAT rules for incoming connections,
# but does not also complement these rules with SNAT rules at the same time.
# In some situations, internal systems may not have a route back out for the
# source address of the incoming connection, so it is necessary to also
# apply SNAT rules so that the internal systems see the IP of the internal
# interface where fwknopd is running.  This functionality is only enabled
# when ENABLE_IPT_SNAT is set to "Y", and by default SNAT rules are built
# with the MASQUERADE target (since then the internal IP does not have to be
# defined here in the fwknop.conf file), but if you want fwknopd to use the
# SNAT target then also define an IP address with the SNAT_TRANSLATE_IP
# variable.
#
#ENABLE_IPT_SNAT             N;
#SNAT_TRANSLATE_IP           __CHANGEME__;

# Add ACCEPT rules to the FWKNOP_OUTPUT chain. This is usually only useful
# if there are no state tracking rules to allow connection responses out and
# the OUTPUT chain has a default-drop stance.
#
#ENABLE_IPT_OUTPUT           N;

# fwknopd adds allow rules to a custom iptables chain "FWKNOP_INPUT".
# This chain is called from the INPUT chain, and by default no other
# iptables chains are used.  However, additional chains can be added
# (say, if access needs to be allowed through the local system via the
# FORWARD chain) by altering the IPT_FORWARD_ACCESS variable below.
# For a discussion of the format followed by these keywords, read on:
#
# Specify chain names to which iptables blocking rules will be
# added with the IPT_INPUT_ACCESS and IPT_FORWARD_ACCESS keyword.
# The format for these variables is:
#
#   <Target>,<Table>,<From_chain>,<Jump_rule_position>,\
#       <To_chain>,<Rule_position>.
#
# "Target":
#   Can be any legitimate iptables target, but should usually just be "DROP".
#
# "Table":
#   Can be any iptables table, but the default is "filter".
#
# "From_chain":
#   Is the chain from which packets will be jumped.
#
# "Jump_rule_position":
#   Defines the position within the From_chain where the jump rule is added.
#
# "To_chain":
#   Is the chain to which packets will be jumped. This is the main chain
#   where fwknop rules are added.
#
# "Rule_position":
#   Defines the position where rule are added within the To_chain.
#
#IPT_INPUT_ACCESS        ACCEPT, filter, INPUT, 1, FWKNOP_INPUT, 1;

# The IPT_OUTPUT_ACCESS variable is only used if ENABLE_IPT_OUTPUT is enabled
#
#IPT_OUTPUT_ACCESS       ACCEPT, filter, OUTPUT, 1, FWKNOP_OUTPUT, 1;

# The IPT_FORWARD_ACCESS variable is only used if ENABLE_IPT_FORWARDING is
# enabled.
#
#IPT_FORWARD_ACCESS      ACCEPT, filter, FORWARD, 1, FWKNOP_FORWARD, 1;
#IPT_DNAT_ACCESS         DNAT, nat, PREROUTING, 1, FWKNOP_PREROUTING, 1;

# The IPT_SNAT_ACCESS variable is not used unless both ENABLE_IPT_SNAT and
# ENABLE_IPT_FORWARDING are enabled.  Also, the external static IP must be
# set with the SNAT_TRANSLATE_IP variable.  The default is to use the
# IPT_MASQUERADE_ACCESS variable.
#
#IPT_SNAT_ACCESS         SNAT, nat, POSTROUTING, 1, FWKNOP_POSTROUTING, 1;
#IPT_MASQUERADE_ACCESS   MASQUERADE, nat, POSTROUTING, 1, FWKNOP_MASQUERADE, 1;

# The ENABLE_COMMENT_MATCH_CHECK variable instructs fwknopd to check for the
# iptables 'comment' match at start up.  If it's not found, then fwknopd will
# exit and throw an error.  This variable is enabled by default, but can be
# disabled if you want fwknopd to run without being sure that the comment match
# is available (not recommended, since the comment match enables new SPA rules
# to be timed out).
#
#ENABLE_IPT_COMMENT_CHECK        Y;

##############################################################################
# Parameters specific to ipfw:
#
#
# This variable defines the rule number that fwknopd uses to insert an ipfw
# pass rule.  You would most likely want to change this parameter to a
# number that makes sense in your current ipfw firewall configuration.
#
#IPFW_START_RULE_NUM         10000;

# This variable defines the maximum number of rules fwknopd will create at
# a time. This also tells fwknopd where to stop when flushing all rules.
#
#IPFW_MAX_RULES              1000;

# Flush all existing rules in the fwknop ipfw sets at fwknop start time and/or
# exit time. They default to Y and it is a recommended setting for both.
#
#FLUSH_IPFW_AT_INIT           Y;
#FLUSH_IPFW_AT_EXIT           Y;

# This variable defines the rule set fwknopd uses for active rules. By
# default, it is set 1 and fwknopd assumes that it has full control over this
# set.  That is, fwknopd routinely creates and deletes rules in this set, and
# the entire set itself is also created/deleted during routine operations.
# You have some measure of control over whether the entire set is deleted at
# init/exit with the FLUSH_IPFW_AT_INIT and FLUSH_IPFW_AT_EXIT, but in general
# it is recommended to leave these variables set to the default "Y" setting.
#
#IPFW_ACTIVE_SET_NUM         1;

# This variable defines the rule set that will be used to store expired rules
# that still have a dynamic rule associated to them. That set will be disabled
# by fwknop and should not be enabled while fwknop is running. Not used when
# ipfw isn't using dynamic rules.  By default, it is set 2, but can be anything
# in the range 1-31 except that it shouldn't be the same as
# IPFW_ACTIVE_SET_NUM.  Note that fwknopd disables this set through routine
# operations according to the FLUSH_IPFW_AT_INIT and FLUSH_IPFW_AT_EXIT
# variables.
#
#IPFW_EXPIRE_SET_NUM         2;

# Set the interval (in seconds) over which rules that are expired and
# have no remaining dynamic rules associated with them will be removed.
#
#IPFW_EXPIRE_PURGE_INTERVAL  30;

# Set this variable to "Y" if you want fwknopd to create its own "check-state"
# rule as the first rule in the set.  This would only be needed if there
# was not already a check-state rule in the current firewall configuration.
#
# IPFW_ADD_CHECK_STATE       N;

##############################################################################
# Parameters specific to the pf firewall:
#
#
# This variable defines the pf anchor name to which fwknopd will add and
# delete rules.  This anchor must be linked into the pf policy (typically
# done by adding it into the /etc/pf.conf file), and fwknopd runs a check at
# init time to ensure that the anchor exists.
#
#PF_ANCHOR_NAME             fwknop;

# Set the interval (in seconds) over which rules that are expired
#
#PF_EXPIRE_INTERVAL         30;

##############################################################################

# Directories - These can override compile-time defaults.
#
#FWKNOP_RUN_DIR              /var/run/fwknop;
#FWKNOP_CONF_DIR             /etc/fwknop;

# Files
#
#ACCESS_FILE                 access.conf;
#FWKNOP_PID_FILE             $FWKNOP_RUN_DIR/fwknopd.pid;
#DIGEST_FILE                 $FWKNOP_RUN_DIR/digest.cache;
### The DB version is only used if fwknopd was built with gdbm/ndbm
### support (not needed by default).
#DIGEST_DB_FILE              $FWKNOP_RUN_DIR/digest_db.cache;

# System binaries
#
#FIREWALL_EXE                /bin/firewall-cmd;
#FIREWALL_EXE                /sbin/iptables;

###EOF###
"#;

#[test]
fn force_nat_sends_the_stanzas_open_ports_on_to_its_inner_host() {
    let d = TempDir::new("fwknop-force-nat");
    let k = keys();
    let write = |name: &str, text: String| d.private(name, &text);
    // a FORCE_NAT stanza with OPEN_PORTS becomes a door with `nat`; another stanza that opens
    // other ports only is fine beside it
    let access = write(
        "access.conf",
        format!("SOURCE ANY\n{k}OPEN_PORTS tcp/2222\nFORCE_NAT 10.200.3.2 22\nSOURCE ANY\n{k}OPEN_PORTS tcp/22\n"),
    );
    let (c, _) = fwknop::doors::load(&access, None, fwknop::Legacy::Refuse, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let to: std::net::SocketAddr = "10.200.3.2:22".parse().expect("address");
    assert_eq!(c.doors[0].forward, Some(knockerd::config::Forward::Nat(to)));
    assert_eq!(c.doors[1].forward, None);
    assert_eq!(c.nat_targets(), vec![(Service::tcp(2222), to)]);
    assert_eq!(c.forwarded(), vec![Service::tcp(2222)]);
    assert!(to_toml(&fwknop::load(&access, None).expect("loads"))
        .contains("open = [\"tcp/2222\"]\n# note: FORCE_NAT: granted connections to these services are sent on to this inner host.\nnat = \"10.200.3.2:22\"\n"));

    // a stanza that could grant the same port (its own OPEN_PORTS, or whatever the client
    // asks for) would send its clients on as well: refused with its line, unless RESTRICT_PORTS
    for (other, line) in [
        ("OPEN_PORTS tcp/2222\n", 6),
        ("", 6),
        ("OPEN_PORTS tcp/2222\nFORCE_NAT 10.200.3.3 22\n", 6),
    ] {
        let access = write(
            "clash.conf",
            format!("SOURCE ANY\n{k}OPEN_PORTS tcp/2222\nFORCE_NAT 10.200.3.2 22\nSOURCE 10.0.0.0/8\n{k}{other}"),
        );
        let e = fwknop::doors::load(&access, None, fwknop::Legacy::Refuse, &[])
            .expect_err("a shared port")
            .to_string();
        assert!(
            e.contains(&format!("clash.conf:{line}: stanza #2 can grant tcp/2222, which stanza #1 (line 1) sends on to 10.200.3.2:22 (FORCE_NAT)")),
            "{e}"
        );
    }
    let access = write(
        "restricted.conf",
        format!("SOURCE ANY\n{k}OPEN_PORTS tcp/2222\nFORCE_NAT 10.200.3.2 22\nSOURCE 10.0.0.0/8\n{k}RESTRICT_PORTS tcp/2222\n"),
    );
    fwknop::doors::load(&access, None, fwknop::Legacy::Refuse, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    // the same inner host and port in two stanzas (two keys) is one DNAT
    let access = write(
        "two.conf",
        format!("SOURCE ANY\n{k}OPEN_PORTS tcp/2222\nFORCE_NAT 10.200.3.2 22\nSOURCE 10.0.0.0/8\n{k}OPEN_PORTS tcp/2222\nFORCE_NAT 10.200.3.2 22\n"),
    );
    fwknop::doors::load(&access, None, fwknop::Legacy::Refuse, &[])
        .unwrap_or_else(|e| panic!("{e}"));

    // what knockerd does not do is a reason, with its line
    let c = parse(&format!(
        "SOURCE 10.0.0.1\n{k}FORCE_NAT 10.200.3.2 22\n\
         SOURCE 10.0.0.2\n{k}OPEN_PORTS tcp/2222\nFORCE_NAT 10.200.3.2 0\n\
         SOURCE 10.0.0.3\n{k}OPEN_PORTS tcp/2222\nFORCE_NAT 10.200.3.2 22\nFORCE_SNAT 10.200.1.1\n\
         SOURCE 10.0.0.4\n{k}OPEN_PORTS tcp/2222\nFORCE_NAT 10.200.3.2 22\nFORCE_MASQUERADE Y\n\
         SOURCE ANY\n{k}"
    ));
    // FORCE_SNAT and FORCE_MASQUERADE beside FORCE_NAT are the door's nat_source
    assert_eq!(c.stanzas.len(), 3);
    let sources: Vec<Option<knockerd::config::NatSource>> =
        c.stanzas.iter().map(|s| s.nat_source).collect();
    assert_eq!(
        sources,
        [
            Some(knockerd::config::NatSource::Address(
                "10.200.1.1".parse().expect("ip")
            )),
            Some(knockerd::config::NatSource::Masquerade),
            None
        ]
    );
    let reasons: Vec<String> = c.refused.iter().map(|r| r.reasons.join("\n")).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].contains("access.conf:4: FORCE_NAT without OPEN_PORTS"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("access.conf:9: FORCE_NAT 10.200.3.2:0: knockerd forwards only to an inner host's address and a port other than 0"), "{reasons:?}");
}

#[test]
fn an_imported_force_nat_stanza_is_a_native_nat_door_that_takes_a_nat_request() {
    use knocker_wire::fwknop::{FwknopKeys, MessageType, NatAccess, SpaMessage};
    let d = TempDir::new("fwknop-force-nat-import");
    let k = keys();
    let access = d.private(
        "access.conf",
        &format!("SOURCE ANY\n{k}OPEN_PORTS tcp/2222\nFORCE_NAT 10.200.3.2 22\n"),
    );
    let toml = to_toml(&fwknop::load(&access, None).expect("loads"))
        .replace("/etc/knocker/", &format!("{}/", d.join("").display()));
    for (file, key) in [
        ("fwknop-1.fwknop.key", ENC_B64),
        ("fwknop-1.fwknop.hmac.key", HMAC_B64),
    ] {
        d.private(file, &format!("{key}\n"));
    }
    let c = knockerd::config::native::parse(Path::new("k.toml"), &toml)
        .unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let to: std::net::SocketAddr = "10.200.3.2:22".parse().expect("address");
    assert_eq!(c.doors[0].forward, Some(knockerd::config::Forward::Nat(to)));
    let knocker_engine::Kind::Spa(spa) = &c.doors[0].spec.kind else {
        panic!("an SPA door")
    };
    let keys = FwknopKeys::new(
        zeroize::Zeroizing::new(b"abcdefghijklmnop".to_vec()),
        zeroize::Zeroizing::new(b"qrstuvwxyz0123456789".to_vec()),
        Digest::Sha256,
    )
    .expect("keys");
    let mut m = SpaMessage::access(
        "alice",
        1_000_000,
        std::net::Ipv4Addr::new(10, 200, 1, 2),
        vec![Service::tcp(2222)],
        None,
    );
    m.message_type = MessageType::NatAccess;
    m.nat = Some(NatAccess {
        host: "192.0.2.9".into(),
        port: 22,
    });
    let packet = knocker_wire::fwknop::encode(&keys, &m, getrandom::fill).expect("encode");
    let r = (spa.decode)(packet.as_bytes(), 0).expect("a nat door takes fwknop -N");
    assert_eq!(r.access, [Service::tcp(2222)]);
}

#[test]
fn a_native_fwknop_door_with_nat_networks_takes_a_clients_own_inner_host_there_only() {
    use knocker_wire::fwknop::{FwknopKeys, MessageType, NatAccess, SpaMessage};
    let d = TempDir::new("fwknop-nat-networks");
    let k = keys();
    let access = d.private(
        "access.conf",
        &format!("SOURCE ANY\n{k}OPEN_PORTS tcp/2222\n"),
    );
    let base = to_toml(&fwknop::load(&access, None).expect("loads"))
        .replace("/etc/knocker/", &format!("{}/", d.join("").display()));
    for (file, key) in [
        ("fwknop-1.fwknop.key", ENC_B64),
        ("fwknop-1.fwknop.hmac.key", HMAC_B64),
    ] {
        d.private(file, &format!("{key}\n"));
    }
    let with = |line: &str| base.replacen("open = [", &format!("{line}\nopen = ["), 1);
    let toml = with("nat_networks = [\"10.200.3.0/24\"]");
    let c = knockerd::config::native::parse(Path::new("k.toml"), &toml)
        .unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(
        c.doors[0].nat_networks,
        ["10.200.3.0/24"
            .parse::<knockerd::config::Net>()
            .expect("net")]
    );
    assert_eq!(c.doors[0].forward, None, "the port itself stays local");
    assert!(knockerd::ruleset::TableSpec::from_config(&c).client_nat);
    let knocker_engine::Kind::Spa(spa) = &c.doors[0].spec.kind else {
        panic!("an SPA door")
    };
    let keys = FwknopKeys::new(
        zeroize::Zeroizing::new(b"abcdefghijklmnop".to_vec()),
        zeroize::Zeroizing::new(b"qrstuvwxyz0123456789".to_vec()),
        Digest::Sha256,
    )
    .expect("keys");
    let nat_packet = |host: &str| {
        let mut m = SpaMessage::access(
            "alice",
            1_000_000,
            std::net::Ipv4Addr::new(10, 200, 1, 2),
            vec![Service::tcp(2222)],
            None,
        );
        m.message_type = MessageType::NatAccess;
        m.nat = Some(NatAccess {
            host: host.into(),
            port: 22,
        });
        knocker_wire::fwknop::encode(&keys, &m, getrandom::fill).expect("encode")
    };
    let r = (spa.decode)(nat_packet("10.200.3.2").as_bytes(), 0).expect("a listed inner host");
    assert_eq!(r.nat, Some("10.200.3.2:22".parse().expect("target")));
    match (spa.decode)(nat_packet("10.200.4.2").as_bytes(), 0) {
        Err(knocker_engine::SpaError::Unsupported(why)) => {
            assert!(why.contains("nat_networks"), "{why}")
        }
        other => panic!("an unlisted inner host must be refused: {other:?}"),
    }
    // without the key, a NAT request is refused and says which keys would take it
    let c = knockerd::config::native::parse(Path::new("k.toml"), &base).expect("parses");
    let knocker_engine::Kind::Spa(spa) = &c.doors[0].spec.kind else {
        panic!("an SPA door")
    };
    match (spa.decode)(nat_packet("10.200.3.2").as_bytes(), 0) {
        Err(knocker_engine::SpaError::Unsupported(why)) => {
            assert!(why.contains("nat_networks = ["), "{why}")
        }
        other => panic!("refused without nat_networks: {other:?}"),
    }
    // what the key refuses, with the line
    for (line, says) in [
        ("nat_networks = [\"fd00:200:3::/64\"]", "only IPv4"),
        ("nat_networks = []", "is empty"),
        ("nat_networks = [\"any\"]", "nat_networks:"),
        (
            "nat_networks = [\"10.200.3.0/24\"]\nnat = \"10.200.3.2:22\"",
            "without nat",
        ),
        (
            "nat_networks = [\"10.200.3.0/24\"]\nconnections = 1",
            "connections",
        ),
    ] {
        let toml = with(line);
        let e = knockerd::config::native::parse(Path::new("k.toml"), &toml)
            .expect_err(line)
            .to_string();
        assert!(e.contains(says), "{line}: {e}");
    }
    let seq = knockerd::config::native::parse(
        Path::new("k.toml"),
        "[door.s]\nsequence = [\"8000\", \"7000\", \"9000\"]\nopen = [\"22\"]\nnat_networks = [\"10.200.3.0/24\"]\n",
    )
    .expect_err("a sequence door")
    .to_string();
    assert!(seq.contains("belongs to kind = \"fwknop\""), "{seq}");
    // import-fwknop says where the key goes when fwknopd.conf turns forwarding on
    let conf = d.private("fwknopd.conf", "ENABLE_IPT_FORWARDING Y;\n");
    let imported =
        to_toml(&fwknop::load_with(&access, Some(&conf), fwknop::Legacy::Refuse).expect("loads"));
    assert!(
        imported.contains("ENABLE_IPT_FORWARDING Y") && imported.contains("# nat_networks = ["),
        "{imported}"
    );
    assert!(!base.contains("nat_networks"), "{base}");
}
