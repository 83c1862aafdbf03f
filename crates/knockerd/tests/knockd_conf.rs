//! knockd.conf as it is: the grammar, every key, errors and warnings, the native TOML that
//! `import-knockd` prints (read back by `config::native::parse` into the same configuration), and the
//! command line. No root needed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::Duration;

use knocker_engine::{Kind, Service};
use knocker_lab::TempDir;
use knockerd::config::knockd::{self, Knockd};
use knockerd::config::{self, Command, Config, OnStop};

/// Debian's /etc/knockd.conf (knockd 0.8-2), as installed.
const DEBIAN_DEFAULT: &str = "[options]
\tUseSyslog

[openSSH]
\tsequence    = 7000,8000,9000
\tseq_timeout = 5
\tcommand     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
\ttcpflags    = syn

[closeSSH]
\tsequence    = 9000,8000,7000
\tseq_timeout = 5
\tcommand     = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
\ttcpflags    = syn

[openHTTPS]
\tsequence    = 12345,54321,24680,13579
\tseq_timeout = 5
\tcommand     = /usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%
\ttcpflags    = syn
";

/// knockd(1), examples 1 and 2.
const MAN_EXAMPLES_1_2: &str = "[options]
     logfile = /var/log/knockd.log

[openSSH]
     sequence    = 7000,8000,9000
     seq_timeout = 10
     tcpflags    = syn
     command     = /sbin/iptables -A INPUT -s %IP% --dport 22 -j ACCEPT

[closeSSH]
     sequence    = 9000,8000,7000
     seq_timeout = 10
     tcpflags    = syn
     command     = /sbin/iptables -D INPUT -s %IP% --dport 22 -j ACCEPT

[opencloseSSH]
     sequence      = 2222:udp,3333:tcp,4444:udp
     seq_timeout   = 15
     tcpflags      = syn,ack
     start_command = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --syn -j ACCEPT
     cmd_timeout   = 5
     stop_command  = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --syn -j ACCEPT
";

/// knockd(1), example 4 (example 3 without the _6 commands); SEQFILE is replaced by a file.
const MAN_EXAMPLE_4: &str = "[options]
     logfile = /var/log/knockd.log

[opencloseSMTP]
     one_time_sequences = SEQFILE
     seq_timeout        = 15
     tcpflags           = fin,!ack
     start_command      = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
     start_command_6    = /usr/sbin/ip6tables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
     cmd_timeout        = 5
     stop_command       = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
     stop_command_6     = /usr/sbin/ip6tables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
";

fn parse(text: &str) -> Knockd {
    knockd::parse(Path::new("knockd.conf"), text)
        .unwrap_or_else(|e| panic!("must parse: {e}\n{text}"))
}

fn error(text: &str) -> String {
    knockd::parse(Path::new("knockd.conf"), text)
        .expect_err("must be refused")
        .to_string()
}

fn shell(s: &str) -> Option<Command> {
    Some(Command::Shell(s.to_string()))
}

fn tcp(ports: &[u16]) -> Vec<Service> {
    ports.iter().map(|p| Service::tcp(*p)).collect()
}

#[test]
fn debian_default_config() {
    let k = parse(DEBIAN_DEFAULT);
    assert!(k.options.use_syslog);
    assert_eq!(k.options.log_file, None);
    assert_eq!(
        k.config.interfaces.first().map(String::as_str),
        Some("eth0"),
        "knockd's default interface"
    );
    assert!(!k.interface_given);
    let names: Vec<&str> = k
        .config
        .doors
        .iter()
        .map(|d| d.spec.name.as_str())
        .collect();
    assert_eq!(names, ["openSSH", "closeSSH", "openHTTPS"], "file order");
    let d = &k.config.doors[0];
    assert_eq!(d.spec.sequence, tcp(&[7000, 8000, 9000]));
    assert_eq!(d.spec.window, Duration::from_secs(5));
    assert_eq!(
        d.spec.tcp_flags.map(|f| f.to_string()).as_deref(),
        Some("syn")
    );
    assert!(d.spec.open.is_empty() && !d.protect);
    assert_eq!(
        d.spec.open_for,
        Duration::from_secs(10),
        "Cmd_Timeout's default"
    );
    assert_eq!(
        d.start_command,
        shell("/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT")
    );
    assert_eq!(
        (d.stop_command.clone(), d.start_command_6.clone()),
        (None, None)
    );
    assert_eq!(d.line, 4);
    let ip: IpAddr = "192.0.2.7".parse().expect("ip");
    assert_eq!(
        d.start_command_for(ip).map(|c| c.argv_for(ip)),
        Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "/sbin/iptables -A INPUT -s 192.0.2.7 -p tcp --dport 22 -j ACCEPT".into()
        ])
    );
    // knockd accepts the sweepable sequences, so they run, with a warning each
    assert_eq!(k.warnings.len(), 2, "{:?}", k.warnings);
    assert!(
        k.warnings[0].starts_with("knockd.conf:5:") && k.warnings[0].contains("ascending"),
        "{:?}",
        k.warnings
    );
    assert!(
        k.warnings[1].starts_with("knockd.conf:11:") && k.warnings[1].contains("descending"),
        "{:?}",
        k.warnings
    );
}

#[test]
fn man_page_examples() {
    let k = parse(MAN_EXAMPLES_1_2);
    assert_eq!(
        k.options.log_file.as_deref(),
        Some(Path::new("/var/log/knockd.log"))
    );
    assert!(!k.options.use_syslog);
    let d = k.config.door("opencloseSSH").expect("door");
    assert_eq!(
        d.spec.sequence,
        vec![Service::udp(2222), Service::tcp(3333), Service::udp(4444)]
    );
    assert_eq!(d.spec.window, Duration::from_secs(15));
    assert_eq!(
        d.spec.tcp_flags.map(|f| f.to_string()).as_deref(),
        Some("syn,ack")
    );
    assert_eq!(d.stop_after, Duration::from_secs(5));
    assert_eq!(d.spec.open_for, Duration::from_secs(5));
    assert_eq!(
        d.stop_command,
        shell("/usr/sbin/iptables -D INPUT -s %IP% -p tcp --syn -j ACCEPT")
    );

    let dir = TempDir::new("knockd-conf-man4");
    let seq = dir.write(
        "smtp_sequences",
        "# used ones start with #\n 7113,9431:udp,8222\n 6000,6200,6100:udp\n",
    );
    let text = MAN_EXAMPLE_4.replace("SEQFILE", &seq.to_string_lossy());
    let k = parse(&text);
    let d = k.config.door("opencloseSMTP").expect("door");
    let f = d.one_time().expect("one-time file");
    assert_eq!(f.entries.len(), 2);
    assert_eq!(
        d.spec.kind,
        Kind::OneTime {
            lines: vec![
                vec![Service::tcp(7113), Service::udp(9431), Service::tcp(8222)],
                vec![Service::tcp(6000), Service::tcp(6200), Service::udp(6100)]
            ],
            used: None
        }
    );
    assert!(d.spec.sequence.is_empty());
    assert_eq!(
        d.spec.tcp_flags.map(|f| f.to_string()).as_deref(),
        Some("fin,!ack")
    );
    assert_eq!(
        d.start_command_6,
        shell("/usr/sbin/ip6tables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT")
    );
    assert_eq!(
        d.stop_command_6,
        shell("/usr/sbin/ip6tables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT")
    );
    let v6: IpAddr = "2001:db8::7".parse().expect("ip");
    assert_eq!(d.stop_command_for(v6), d.stop_command_6.as_ref());
    assert!(k.warnings.is_empty(), "{:?}", k.warnings);
}

#[test]
fn every_key_alias_and_case() {
    let text = "[OPTIONS]\n"; // not the options: a door, which then has no sequence
    assert!(error(text).contains("empty knock sequence"));
    let text = "\
[options]
  USESYSLOG
  logFile = /var/log/Knockd.log
  PIDFILE=/run/Knockd.pid
  interface = lo

[Door]
  SEQUENCE = 7000:UDP, 9000 ,8000:Tcp
  Timeout = 12
  TCPFlags = SYN,!Ack
  tcpflags = psh
  Command = Echo %IP% MiXeD
  COMMAND_6 = Echo6 %IP%
  Cmd_Timeout = 3
  Stop_Command = Stop %IP%
  stop_command_6 = Stop6 %IP%
  Target = 192.0.2.1
  UseSyslog

[second door]
  sequence = 7001,9001,8001
  SEQ_TIMEOUT = 4
  start_command = a
";
    let k = parse(text);
    assert_eq!(
        k.options,
        knockd::KnockdOptions {
            use_syslog: true,
            log_file: Some("/var/log/Knockd.log".into()),
            pid_file: Some("/run/Knockd.pid".into()),
        }
    );
    assert_eq!(k.config.interfaces.first().map(String::as_str), Some("lo"));
    let d = k.config.door("Door").expect("door");
    assert_eq!(
        d.spec.sequence,
        vec![Service::udp(7000), Service::tcp(9000), Service::tcp(8000)]
    );
    assert_eq!(d.spec.window, Duration::from_secs(12));
    // TCPFlags lines add up; protocols and flags are case-insensitive, values are kept as written
    assert_eq!(
        d.spec.tcp_flags.map(|f| f.to_string()).as_deref(),
        Some("syn,psh,!ack")
    );
    assert_eq!(d.start_command, shell("Echo %IP% MiXeD"));
    assert_eq!(d.start_command_6, shell("Echo6 %IP%"));
    assert_eq!(d.stop_command, shell("Stop %IP%"));
    assert_eq!(d.stop_command_6, shell("Stop6 %IP%"));
    assert_eq!(d.stop_after, Duration::from_secs(3));
    assert_eq!(d.spec.target, Some("192.0.2.1".parse().expect("ip")));
    let d = k.config.door("second_door").expect("renamed door");
    assert_eq!(d.spec.window, Duration::from_secs(4));
    assert!(
        k.warnings
            .iter()
            .any(|w| w.contains("[second door] is called \"second_door\"")),
        "{:?}",
        k.warnings
    );
}

#[test]
fn no_inline_comments_and_knockd_trimming() {
    let k = parse("[d]\r\n\tsequence = 7000,9000,8000\r\n  command = echo %IP% # x   \r\n# a comment\r\n   # an indented comment\r\n");
    assert_eq!(k.config.doors[0].start_command, shell("echo %IP% # x"));
    // `#` after a port: knockd's atoi reads the number and ignores the rest, and so do we
    let k = parse("[d]\nsequence = 7000,9000,8000 # ssh\ncommand = x\n");
    assert_eq!(k.config.doors[0].spec.sequence, tcp(&[7000, 9000, 8000]));
    assert!(
        k.warnings
            .iter()
            .any(|w| w.starts_with("knockd.conf:2:") && w.contains("ignores the rest")),
        "{:?}",
        k.warnings
    );
    // values split at the first `=` only
    let k = parse("[d]\nsequence = 7000,9000,8000\ncommand = FOO=bar x=%IP%\n");
    assert_eq!(k.config.doors[0].start_command, shell("FOO=bar x=%IP%"));
}

#[test]
fn errors_name_the_line_and_the_fix() {
    let too_many: Vec<String> = (1000..1033).map(|p| p.to_string()).collect();
    let too_many = format!("[d]\nsequence = {}\n", too_many.join(","));
    let cases: &[(&str, &str, &str)] = &[
        ("Sequence = 7000,9000,8000\n", ":1:", "before any section"),
        ("# c\n\nUseSyslog\n[d]\n", ":3:", "before any section"),
        (
            "[d]\nsequence = 7000,9000,8000\nColour = red\n",
            ":3:",
            "unknown directive \"Colour\"",
        ),
        ("[options]\nColour = red\n", ":2:", "unknown directive"),
        (
            "[d]\nsequence = 7000,70000,8000\n",
            ":2:",
            "port 70000 is invalid",
        ),
        (
            "[d]\nsequence = 7000,abc,8000\n",
            ":2:",
            "knockd would silently read it as port 0",
        ),
        (
            "[d]\nsequence = 7000,8000:sctp\n",
            ":2:",
            "unknown protocol",
        ),
        (&too_many, ":2:", "too many ports"),
        (
            "[d]\nsequence = 7000,9000,8000\nTCPFlags = syn, !ack\n",
            ":3:",
            "no spaces",
        ),
        (
            "[d]\nsequence = 7000,9000,8000\nTCPFlags = syn,ece\n",
            ":3:",
            "unrecognized flag \"ECE\"",
        ),
        (
            "[d]\nsequence = 7000,9000,8000\nTCPFlags =\n",
            ":3:",
            "unrecognized flag",
        ),
        (
            "[options]\nUseSyslog\n\n[d]\nseq_timeout = 5\n",
            ":4:",
            "empty knock sequence",
        ),
        (
            "[d]\nsequence = 7000,9000,8000\nTarget = knock.example.org\n",
            ":3:",
            "not an IP address",
        ),
        ("[options]\nUseSyslog = yes\n", ":2:", "takes no value"),
        (
            "[d]\nsequence = 7000,9000,8000\nLogFile = /tmp/x\n",
            ":3:",
            "belongs in [options]",
        ),
        (
            "[options]\nSequence = 7000,9000,8000\n",
            ":2:",
            "door directive",
        ),
        ("[]\n", ":1:", "bad section name"),
        (
            "[d]\nsequence = 7000,9000,8000\nbogus\n",
            ":3:",
            "has no `=`",
        ),
        (
            "[options]\nInterface = eth0 lan\n",
            ":2:",
            "not an interface name",
        ),
        (
            "[d]\nsequence = 7000,9000,8000\nSeq_Timeout = 5s\n",
            ":3:",
            "read it as 5",
        ),
        (
            "[d]\nsequence = 7000,9000,8000\nSeq_Timeout = 0\n",
            ":3:",
            "1 or more seconds",
        ),
        (
            "[d]\nsequence = 7000,9000,8000\nCmd_Timeout = -1\n",
            ":3:",
            "give 0 or more",
        ),
        (
            "[d]\nOne_Time_Sequences = /nonexistent/knockd-seq\n",
            ":2:",
            "/nonexistent/knockd-seq",
        ),
    ];
    for (i, (text, line, what)) in cases.iter().enumerate() {
        let e = error(text);
        assert!(
            e.starts_with(&format!("knockd.conf{line}")),
            "case {i}: line {line} expected in {e:?}"
        );
        assert!(e.contains(what), "case {i}: {what:?} expected in {e:?}");
    }
    let long = format!(
        "[d]\nsequence = 7000,9000,8000\ncommand = {}\n",
        "x".repeat(5000)
    );
    assert!(
        error(&long).starts_with("knockd.conf:3:"),
        "{}",
        error(&long)
    );
}

#[test]
fn what_knockd_accepts_runs_with_warnings() {
    // ascending, two knocks, a repeated knock, and doors that overlap: knockd runs them all
    let k = parse("[up]\nsequence = 7000,8000,9000\ncommand = a\n\n[two]\nsequence = 5000,6000:udp\ncommand = b\n\n[rep]\nsequence = 4000,4000,3000\ncommand = c\n\n[copy]\nsequence = 7000,8000,9000\ncommand = d\n");
    let w = k.warnings.join("\n");
    assert!(
        w.contains("knockd.conf:2: door \"up\"") && w.contains("ascending"),
        "{w}"
    );
    assert!(
        w.contains("knockd.conf:6: door \"two\"") && w.contains("at least 3"),
        "{w}"
    );
    assert!(
        w.contains("door \"rep\"") && w.contains("follows itself"),
        "{w}"
    );
    assert!(w.contains("the same sequence"), "{w}");
    assert_eq!(k.config.doors.len(), 4);

    // repeated keys: the last counts; Interface: the first counts (knockd sets it once)
    let k = parse("[options]\nInterface = lo\nInterface = eth9\n[d]\nsequence = 7000,9000,8000\nsequence = 7001,9001,8001\ncommand = a\n");
    assert_eq!(k.config.interfaces.first().map(String::as_str), Some("lo"));
    assert_eq!(k.config.doors[0].spec.sequence, tcp(&[7001, 9001, 8001]));
    assert!(
        k.warnings
            .iter()
            .any(|w| w.starts_with("knockd.conf:3:") && w.contains("keeps the first one")),
        "{:?}",
        k.warnings
    );
    assert!(
        k.warnings
            .iter()
            .any(|w| w.starts_with("knockd.conf:6:") && w.contains("already given at line 5")),
        "{:?}",
        k.warnings
    );

    // a door with no command only logs, in knockd too; duplicate section names are two doors
    let k = parse("[d]\nsequence = 7000,9000,8000\n[d]\nsequence = 7001,9001,8001\n");
    assert_eq!(k.config.doors[1].spec.name, "d-2");
    assert!(
        k.warnings.iter().any(|w| w.contains("runs no command")),
        "{:?}",
        k.warnings
    );

    // no doors at all
    let k = parse("[options]\nUseSyslog\n");
    assert!(k.config.doors.is_empty());
    assert!(
        k.warnings.iter().any(|w| w.contains("no doors")),
        "{:?}",
        k.warnings
    );
}

#[test]
fn one_time_sequences() {
    let dir = TempDir::new("knockd-conf-onetime");
    let seq = dir.write("seq", " 7113,9431:udp,8222\n#6000,6200,6100\n");
    let path = seq.to_string_lossy().into_owned();
    // One_Time_Sequences after Sequence replaces it, as in knockd
    let k = parse(&format!(
        "[d]\nsequence = 7000,9000,8000\none_time_sequences = {path}\ncommand = a\n"
    ));
    let d = &k.config.doors[0];
    assert!(d.one_time().is_some() && d.spec.sequence.is_empty());
    assert_eq!(d.kind_name(), "one-time");
    assert!(
        k.warnings
            .iter()
            .any(|w| w.starts_with("knockd.conf:2:") && w.contains("Sequence is ignored")),
        "{:?}",
        k.warnings
    );
    // the other way round knockd uses the Sequence once, then the file: refused
    let e = error(&format!(
        "[d]\none_time_sequences = {path}\nsequence = 7000,9000,8000\n"
    ));
    assert!(
        e.starts_with("knockd.conf:3:") && e.contains("keep one of them"),
        "{e}"
    );
    // a used-up file closes the door for good (knockd would not start at all)
    let used = dir.write("used", "#7113,9431:udp,8222\n");
    let k = parse(&format!(
        "[d]\none_time_sequences = {}\ncommand = a\n",
        used.display()
    ));
    assert!(
        k.warnings.iter().any(|w| w.contains("closed for good")),
        "{:?}",
        k.warnings
    );
    // a line whose meaning differs between knockd and knockerd's own syntax is refused
    let slash = dir.write("slash", " 7113/udp,9431,8222\n");
    let e = error(&format!("[d]\none_time_sequences = {}\n", slash.display()));
    assert!(
        e.starts_with("knockd.conf:2:") && e.contains(":1: knockd reads this line as tcp/7113"),
        "{e}"
    );
}

/// The native configuration read back from import-knockd's TOML equals the knockd one, except
/// for the file name, the lines and that native knock ports are dropped; doors are compared by
/// name.
fn same_config(a: &Config, b: &Config) {
    assert!(!a.drop_knocks, "knockd only watches its knock ports");
    assert!(b.drop_knocks, "knockerd's own doors drop theirs");
    let norm = |c: &Config| {
        let mut c = c.clone();
        c.file = PathBuf::new();
        c.drop_knocks = true;
        for d in &mut c.doors {
            d.line = 0;
        }
        c.doors.sort_by(|x, y| x.spec.name.cmp(&y.spec.name));
        c
    };
    assert_eq!(norm(a), norm(b));
}

#[test]
fn import_round_trip() {
    let dir = TempDir::new("knockd-conf-import");
    let seq = dir.write(
        "smtp_sequences",
        " 7113,9431:udp,8222\n 6000,6200,6100:udp\n",
    );
    let text = format!(
        "[options]
    UseSyslog
    LogFile = /var/log/knockd.log
    PidFile = /run/knockd.pid
    Interface = ens3

[openSSH]
    sequence = 7000,9431:udp,8000,7500
    seq_timeout = 7200
    tcpflags = syn,!ack
    command = /sbin/iptables -I INPUT -s %IP% -p tcp --dport 22 -j ACCEPT && logger \"opened \\\"%IP%\\\"\"
    cmd_timeout = 30
    stop_command = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
    start_command_6 =
    target = 2001:db8::1

[openSSH]
    sequence = 5000,6000,5500
    timeout = 9
    command = echo 'single quotes' %IP% # kept
    stop_command_6 = echo v6 only
    cmd_timeout = 0

[one time]
    one_time_sequences = {}
    command_6 = x6 %IP%
    cmd_timeout = 100000
    stop_command = y
",
        seq.display()
    );
    let conf = dir.write("knockd.conf", &text);
    let k = knockd::parse(&conf, &text).expect("parse");
    let toml = k.to_toml();
    let native = config::native::parse(Path::new("imported.toml"), &toml)
        .unwrap_or_else(|e| panic!("{e}\n{toml}"));
    same_config(&k.config, &native);
    assert_eq!(native.on_stop, OnStop::Keep);
    for note in [
        "UseSyslog",
        "LogFile = /var/log/knockd.log",
        "PidFile = /run/knockd.pid",
        "journal",
        "iifname",
        "retransmitted SYN",
        "shell's no-op",
        "is cut to 3600",
    ] {
        assert!(toml.contains(note), "{note:?} expected in\n{toml}");
    }
    // the warnings are in the TOML as comments too, and import prints them
    let (printed, warnings) = knockd::import::import(&conf).expect("import");
    assert_eq!(printed, toml);
    assert_eq!(warnings, k.warnings);

    // the same text through the CLI: import-knockd prints it, check --config accepts it
    let (code, out, err) = knockerd(&["import-knockd", &conf.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, toml);
    let native_path = dir.write("imported.toml", &out);
    let (code, out, err) = knockerd(&["check", "--config", &native_path.to_string_lossy()]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn import_of_sweepable_doors_says_what_to_fix() {
    let k = parse(DEBIAN_DEFAULT);
    let toml = k.to_toml();
    assert!(
        toml.contains(
            "# warning: line 5: door \"openSSH\": the sequence's ports are in ascending order"
        ),
        "{toml}"
    );
    assert!(toml.contains("refuses this door as it is"), "{toml}");
    // knockerd's own format refuses it until the warning is acted on, with the same message
    let e = config::native::parse(Path::new("imported.toml"), &toml)
        .expect_err("sweepable")
        .to_string();
    assert!(e.contains("ascending") || e.contains("descending"), "{e}");
    let fixed = toml
        .replace(
            "[\"7000\", \"8000\", \"9000\"]",
            "[\"8000\", \"7000\", \"9000\"]",
        )
        .replace(
            "[\"9000\", \"8000\", \"7000\"]",
            "[\"8000\", \"9000\", \"7000\"]",
        );
    config::native::parse(Path::new("imported.toml"), &fixed).expect("fixed");
}

fn knockerd(args: &[&str]) -> (i32, String, String) {
    let out = Process::new(env!("CARGO_BIN_EXE_knockerd"))
        .args(args)
        .env("KNOCKERD_LOG", "off")
        .output()
        .expect("run knockerd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_runs_a_knockd_conf() {
    let dir = TempDir::new("knockd-conf-cli-check");
    let conf = dir.write(
        "knockd.conf",
        &format!("{}\n[options]\n\tInterface = lo\n", DEBIAN_DEFAULT),
    );
    let path = conf.to_string_lossy().into_owned();
    let (code, out, err) = knockerd(&["check", "--knockd-conf", &path]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("{path}: OK (knockd.conf")), "{out}");
    assert!(
        out.contains(&format!("warning: {path}:5: door \"openSSH\"")),
        "{out}"
    );
    assert!(out.contains("logs to syslog too (UseSyslog)"), "{out}");
    assert!(out.contains("door openHTTPS (line 16):"), "{out}");
    assert!(
        out.contains("/bin/sh -c \"/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\""),
        "{out}"
    );
    assert!(out.contains("iifname \"lo\""), "{out}");
    // knockd also saw knocks routed to other hosts (Target); knockerd sees only its own
    let routed = dir.write(
        "routed.conf",
        "[options]\nInterface = lo\n[local]\nsequence = 7000,9000,8000\ncommand = x\ntarget = 127.0.0.1\n[wol]\nsequence = 7001,9001,8001\ncommand = x\ntarget = 192.0.2.99\n",
    );
    let routed = routed.to_string_lossy().into_owned();
    let (code, out, err) = knockerd(&["check", "--knockd-conf", &routed]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "warning: {routed}:7: door \"wol\": Target 192.0.2.99 is not an address of this host"
        )),
        "{out}"
    );
    assert!(!out.contains("door \"local\": Target"), "{out}");
    // the global option works before the subcommand too
    let (code, _, err) = knockerd(&["--knockd-conf", &path, "check"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn check_refuses_what_knockd_refuses() {
    let dir = TempDir::new("knockd-conf-cli-bad");
    let conf = dir.write(
        "knockd.conf",
        "[options]\nInterface = lo\n[d]\nsequence = 7000,9000,8000\nColour = red\n",
    );
    let path = conf.to_string_lossy().into_owned();
    let (code, _, err) = knockerd(&["check", "--knockd-conf", &path]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{path}:5: unknown directive \"Colour\"")),
        "{err}"
    );
    // knockd does not start on an interface that does not exist; neither does knockerd
    let conf = dir.write(
        "noif.conf",
        "[options]\nInterface = nosuchif0\n[d]\nsequence = 7000,9000,8000\n",
    );
    let (code, _, err) = knockerd(&["check", "--knockd-conf", &conf.to_string_lossy()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("interface \"nosuchif0\" does not exist"),
        "{err}"
    );
    // import does not need the interface, but needs a valid file
    let (code, out, err) = knockerd(&["import-knockd", &conf.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("interface = \"nosuchif0\""), "{out}");
    let (code, _, err) = knockerd(&["import-knockd", &path]);
    assert_eq!(code, 1);
    assert!(err.contains(":5:"), "{err}");
    // --config and --knockd-conf exclude each other
    let (code, _, err) = knockerd(&["check", "--config", "/dev/null", "--knockd-conf", &path]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn line() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "[options]",
            "[d]",
            "[]",
            "[",
            "UseSyslog",
            "LogFile",
            "PidFile",
            "Interface",
            "Sequence",
            "sequence",
            "One_Time_Sequences",
            "Seq_Timeout",
            "Timeout",
            "TCPFlags",
            "Command",
            "Command_6",
            "Start_Command",
            "Start_Command_6",
            "Cmd_Timeout",
            "Stop_Command",
            "Stop_Command_6",
            "Target",
            "#",
            "=",
            "",
        ]);
        let value = prop::sample::select(vec![
            "",
            "7000,9000,8000",
            "7000:udp,8000:TCP,9000",
            "1,2",
            "65535,0",
            "-1",
            "99999999999",
            "syn,!ack",
            "fin,!ACK,urg",
            "!",
            "lo",
            "eth0",
            "192.0.2.1",
            "::1",
            "echo %IP% # x",
            "5",
            "0",
            " = = ",
        ]);
        (key, any::<bool>(), value, ".{0,12}").prop_map(|(k, eq, v, junk)| {
            if eq {
                format!("{k} = {v}{junk}")
            } else {
                format!("{k}{junk}")
            }
        })
    }

    proptest! {
        #[test]
        fn parse_never_panics(lines in prop::collection::vec(line(), 0..24)) {
            let text = lines.join("\n");
            if let Ok(k) = knockd::parse(Path::new("knockd.conf"), &text) {
                // what parses also renders
                let _ = k.to_toml();
            }
        }

        #[test]
        fn sequences_never_panic(text in "\\PC{0,64}") {
            let _ = knockd::parse_sequence(&text);
        }
    }
}
