//! Configuration of knocker's own spa and syn doors: what loads, and every mistake reported
//! with its file, line and what is wrong. No root needed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use knocker_lab::TempDir;
use knocker_wire::identity::PrivateKey;
use knockerd::config::{self, ConfigError};

/// A directory with a server key (0600) and a clients file, removed when dropped.
fn dir(tag: &str, clients: &str) -> TempDir {
    let d = TempDir::new(&format!("native-conf-{tag}"));
    d.private(
        "server.key",
        &PrivateKey::generate().expect("key").to_base64(),
    );
    d.write("clients.toml", clients);
    d
}

fn alice() -> String {
    let k = PrivateKey::generate().expect("key").public_key();
    format!("[client.alice]\npublic_key = \"{k}\"\n")
}

fn daemon(d: &TempDir) -> String {
    format!(
        "[daemon]\nserver_key = {:?}\nclients = {:?}\n",
        d.0.join("server.key").display().to_string(),
        d.0.join("clients.toml").display().to_string()
    )
}

const SPA: &str = "\n[door.ssh]\nkind = \"spa\"\nport = 62201\nopen = [\"tcp/22\"]\n";
const SYN: &str = "\n[door.syn]\nkind = \"syn\"\nport = 4443\nopen = [\"tcp/22\", \"tcp/443\"]\n";

fn parse(text: &str) -> Result<config::Config, ConfigError> {
    config::native::parse(Path::new("knockerd.toml"), text)
}

fn err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn spa_and_syn_doors_load_with_their_ports_and_rules() {
    let d = dir("ok", &alice());
    let c = parse(&format!("{}{SPA}{SYN}", daemon(&d))).expect("valid");
    assert_eq!(c.spa_ports(), vec![62201]);
    assert_eq!(c.syn_ports(), vec![4443]);
    let kinds: Vec<(&str, config::DoorKind)> = c
        .doors
        .iter()
        .map(|d| (d.kind_name(), d.kind.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("spa", config::DoorKind::Spa { port: 62201 }),
            ("syn", config::DoorKind::Syn { port: 4443 })
        ]
    );
    assert_eq!(c.server_key, d.0.join("server.key"));
    let rules = knockerd::ruleset::render(&knockerd::ruleset::TableSpec::from_config(&c));
    assert!(rules.contains("log prefix \"knocker-spa\""), "{rules}");
    assert!(
        rules.contains("tcp flags & (syn | ack) == syn log prefix \"knocker-syn\""),
        "{rules}"
    );
}

#[test]
fn watched_ports_and_grant_times_are_said_as_they_are() {
    let d = dir("said", &alice());
    let spa = SPA.replace("open = [", "open_for = 30\nmax_open_for = \"1h\"\nopen = [");
    let seq = "\n[door.web]\nsequence = [\"7000\", \"9000:udp\", \"8000\"]\nopen = [\"tcp/443\"]\nopen_for = 20\n";
    let c = parse(&format!("{}{spa}{SYN}{seq}", daemon(&d))).expect("valid");
    let said = |name: &str| c.door(name).expect("door").describe_opening();
    assert_eq!(
        said("ssh"),
        "opens tcp/22 for 30s by default, up to 1h if the client asks"
    );
    assert_eq!(said("syn"), "opens tcp/22, tcp/443 for 30s");
    assert_eq!(said("web"), "opens tcp/443 for 20s");
    // one list for check, the ready line and the listener warning: every kind of knock port
    let watched: Vec<String> = c.watched().iter().map(|w| w.to_string()).collect();
    assert_eq!(
        watched,
        [
            "tcp/7000",
            "tcp/8000",
            "udp/9000",
            "udp/62201 (SPA packets, read whole)",
            "tcp/4443 (stealth SYNs, headers read)"
        ]
    );
    assert_eq!(c.watched().iter().map(|w| w.ports()).sum::<usize>(), 5);
}

/// What door "ssh" of `c` says to a datagram sealed by `client` for it: its SPA decoder, as
/// the engine calls it.
fn ssh_door_says(
    d: &TempDir,
    c: &config::Config,
    client: &PrivateKey,
) -> Result<String, knocker_engine::SpaError> {
    let text = std::fs::read_to_string(d.0.join("server.key")).expect("server key");
    let server = PrivateKey::from_base64(text.trim()).expect("server key");
    let req = knocker_wire::spa::Request {
        timestamp: 1_700_000_000,
        nonce: [7; 16],
        allow: None,
        services: vec![knocker_engine::Service::tcp(22)],
        duration: None,
    };
    let datagram =
        knocker_wire::spa::seal(&req, client, &server.public_key(), &server.door_key("ssh"))
            .expect("seal");
    let knocker_engine::Kind::Spa(spa) = &c.door("ssh").expect("door ssh").spec.kind else {
        panic!("door ssh is not an spa door");
    };
    let precheck = spa
        .precheck
        .as_ref()
        .expect("an spa door has a tag pre-check");
    assert!(precheck(&datagram), "the door tag passes");
    (spa.decode)(&datagram, 0).map(|r| r.username)
}

#[test]
fn no_clients_file_yet_means_nobody_is_enrolled() {
    let alice = PrivateKey::generate().expect("key");
    let enrolled = format!("[client.alice]\npublic_key = \"{}\"\n", alice.public_key());
    let d = dir("noclients", &enrolled);
    // with alice in the clients file her datagram opens door ssh (the check below can fail)
    let c = parse(&format!("{}{SPA}", daemon(&d))).expect("valid");
    assert_eq!(ssh_door_says(&d, &c, &alice), Ok("alice".to_string()));
    // without a clients file the configuration loads, and the same key is a stranger
    std::fs::remove_file(d.0.join("clients.toml")).expect("rm");
    let c = parse(&format!("{}{SPA}", daemon(&d))).expect("loads with no clients");
    assert_eq!(
        ssh_door_says(&d, &c, &alice),
        Err(knocker_engine::SpaError::Refused(
            knocker_engine::Refusal::UnknownKey
        ))
    );
}

#[test]
fn mistakes_name_their_line() {
    let d = dir("bad", &alice());
    let head = daemon(&d);
    let cases: Vec<(String, usize, &str)> = vec![
        (
            format!("{head}{}", SPA.replace("port = 62201\n", "")),
            5,
            "give the port its packets go to",
        ),
        (
            format!("{head}{}", SPA.replace("62201", "70000")),
            7,
            "port must be 1 to 65535",
        ),
        (
            format!("{head}{}", SPA.replace("open = [\"tcp/22\"]\n", "")),
            5,
            "list in `open` the services",
        ),
        (
            format!("{head}{SYN}max_age = 60\n"),
            9,
            "a syn door's window is fixed",
        ),
        (
            format!("{head}{SPA}key_file = \"/x\"\n"),
            9,
            "belong to kind = \"rotating\"",
        ),
        (
            format!("{head}{SPA}rate_limit = -1\n"),
            9,
            "rate_limit is checks per second",
        ),
        (
            format!(
                "{head}\n[door.seq]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"tcp/22\"]\nrate_limit = 5\n"
            ),
            8,
            "rate_limit belongs to kind",
        ),
        (
            format!(
                "{head}{}",
                SYN.replace(
                    "open = [\"tcp/22\", \"tcp/443\"]",
                    &format!(
                        "open = [{}]",
                        (1..=17)
                            .map(|p| format!("\"tcp/{p}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                )
            ),
            5,
            "at most 16 services",
        ),
    ];
    for (text, line, needle) in cases {
        let e = err(&text);
        assert_eq!(
            (e.line, e.message.contains(needle)),
            (Some(line), true),
            "{e}\n---\n{text}"
        );
    }
}

#[test]
fn key_and_clients_problems_point_at_their_files() {
    let d = dir("keys", &alice());
    // an exposed server key: refused at the server_key line, with the fix
    std::fs::set_permissions(
        d.0.join("server.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let e = err(&format!("{}{SPA}", daemon(&d)));
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("chmod 600"), "{e}");
    std::fs::set_permissions(
        d.0.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    // a broken clients file: its own path and line
    std::fs::write(
        d.0.join("clients.toml"),
        format!("{}\n[client.bob]\npublic_key = \"not a key\"\n", alice()),
    )
    .expect("clients");
    let e = err(&format!("{}{SPA}", daemon(&d)));
    assert_eq!(
        (e.file.clone(), e.line),
        (d.0.join("clients.toml"), Some(5)),
        "{e}"
    );
    // a client enrolled for a door that is not a spa or syn door
    std::fs::write(
        d.0.join("clients.toml"),
        format!("{}doors = [\"nope\"]\n", alice()),
    )
    .expect("clients");
    let e = err(&format!("{}{SPA}", daemon(&d)));
    assert_eq!(e.file, d.0.join("clients.toml"), "{e}");
    assert!(e.message.contains("\"nope\""), "{e}");
}

#[test]
fn the_worker_user_is_never_root() {
    let seq = "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"tcp/22\"]\n";
    let c = parse(&format!("[daemon]\nworker_user = \"knocker\"\n\n{seq}")).expect("valid");
    assert_eq!(c.worker_user.as_deref(), Some("knocker"));
    for bad in ["root", "", "no body", "x/y"] {
        let e = err(&format!("[daemon]\nworker_user = {bad:?}\n\n{seq}"));
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("unprivileged user"), "{e}");
    }
}
