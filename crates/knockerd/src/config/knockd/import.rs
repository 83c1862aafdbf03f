//! import-knockd: a knockd.conf as the native TOML with the same meaning.

use crate::config::{toml_comment as comment, toml_quote as quote};
use std::path::Path;

use knocker_engine::Proto;

use crate::config::{Command, ConfigError};

use super::*;

/// What `knockerd import-knockd FILE` prints: the native TOML for a knockd.conf. The interface
/// need not exist on this host.
pub fn import(path: &Path) -> Result<(String, Vec<String>), ConfigError> {
    let k = read_and_parse(path)?;
    Ok((k.to_toml(), k.warnings.clone()))
}

// ---- import-knockd: the native TOML -------------------------------------------------------------

impl Knockd {
    /// The native TOML with the same meaning: `knockerd check --config` reads it back into the
    /// same [`Config`] (modulo file names and lines), except where a `# warning:` says knockerd's
    /// own format refuses what knockd accepted.
    pub fn to_toml(&self) -> String {
        let c = &self.config;
        let mut out = String::new();
        comment(
            &mut out,
            "",
            &format!(
                "knockerd configuration imported from {} by `knockerd import-knockd`.",
                c.file.display()
            ),
        );
        comment(&mut out, "", "Check it with `knockerd check --config FILE`. `# note:` lines say where knockerd's meaning");
        comment(&mut out, "", "differs from knockd's, `# warning:` lines need a look; docs/knockd.md lists every difference.");
        out.push_str("#\n");
        comment(
            &mut out,
            "note: ",
            "for every door: a repeat of the knock just matched (a retransmitted SYN, a duplicated",
        );
        comment(&mut out, "note: ", "datagram) never resets a knock, and neither do ports of other doors; knockd resets on both.");
        comment(&mut out, "note: ", "for every door with a stop command: a knock that completes while the door is already open for that");
        comment(&mut out, "note: ", "address (until its stop command ran) does not run start_command again; knockd runs it each time.");
        comment(&mut out, "note: ", "for every door: knockerd drops its knock ports, so they look filtered; knockd only watched them, and");
        comment(&mut out, "note: ", "so does `--knockd-conf`. A knock port that is a live service's (wake-on-connect) needs `--knockd-conf`.");
        comment(
            &mut out,
            "note: ",
            "for every door: a pending stop command runs at once when knockerd stops cleanly.",
        );
        if self.options.use_syslog {
            comment(&mut out, "note: ", "UseSyslog has no native setting: knockerd logs to stderr, which systemd sends to the journal");
            comment(&mut out, "note: ", "(journalctl -u knockerd) and on to syslog where rsyslog is installed. `--knockd-conf` honours it.");
        }
        if let Some(f) = &self.options.log_file {
            comment(&mut out, "note: ", &format!("LogFile = {} has no native setting: read the journal (journalctl -u knockerd),", f.display()));
            comment(
                &mut out,
                "note: ",
                "or let rsyslog write the file. `--knockd-conf` honours it.",
            );
        }
        if let Some(f) = &self.options.pid_file {
            comment(&mut out, "note: ", &format!("PidFile = {} has no native setting: systemd tracks the process (systemctl status", f.display()));
            comment(&mut out, "note: ", "knockerd). `--knockd-conf` honours it.");
        }
        for w in &self.global_warnings {
            comment(&mut out, "warning: ", w);
        }
        out.push_str("\n[daemon]\n");
        if let Some(i) = c.interfaces.first() {
            if !self.interface_given {
                comment(&mut out, "note: ", &format!("knockd.conf names no Interface, so knockd listened on {DEFAULT_INTERFACE} (unless started with -i)."));
            }
            comment(&mut out, "note: ", "only knocks arriving on this interface count: knockerd matches it (iifname) in its");
            comment(
                &mut out,
                "note: ",
                "nftables rule instead of capturing packets on it.",
            );
            out.push_str(&format!("interface = {}\n", quote(i)));
        }
        for (d, m) in c.doors.iter().zip(&self.meta) {
            out.push_str(&format!("\n[door.{}]\n", d.spec.name));
            comment(
                &mut out,
                "",
                &format!("knockd's [{}], line {}", m.section, m.line),
            );
            for (l, w) in &m.warnings {
                match *l == m.line {
                    true => comment(&mut out, "warning: ", w),
                    false => comment(&mut out, "warning: ", &format!("line {l}: {w}")),
                }
            }
            if m.refused_natively {
                comment(&mut out, "warning: ", "knockerd's own format refuses this door as it is: fix what the warning says before `knockerd check --config` accepts this file");
            }
            if d.start_command.is_none() && d.start_command_6.is_none() {
                comment(&mut out, "warning: ", "knockerd's own format refuses a door that opens nothing and runs nothing: give it a start_command or remove it");
            }
            for n in &m.notes {
                comment(&mut out, "note: ", n);
            }
            match d.one_time() {
                Some(f) => {
                    out.push_str("kind = \"one-time\"\n");
                    out.push_str(&format!(
                        "one_time_sequences = {}\n",
                        quote(&f.path.to_string_lossy())
                    ));
                }
                None => {
                    let knocks: Vec<String> = d
                        .spec
                        .sequence
                        .iter()
                        .map(|s| match s.proto {
                            Proto::Tcp => quote(&s.port.to_string()),
                            Proto::Udp => quote(&format!("{}:udp", s.port)),
                            // knockd.conf has no ICMP steps; written as the native config does
                            Proto::Icmp => quote(&s.to_string()),
                        })
                        .collect();
                    out.push_str(&format!("sequence = [{}]\n", knocks.join(", ")));
                }
            }
            out.push_str(&format!(
                "window = {}   # knockd's Seq_Timeout, seconds from the first knock\n",
                d.spec.window.as_secs()
            ));
            if let Some(f) = d.spec.tcp_flags {
                out.push_str(&format!("tcp_flags = {}\n", quote(&f.to_string())));
            }
            if let Some(t) = d.spec.target {
                out.push_str(&format!("target = {}\n", quote(&t.to_string())));
            }
            out.push_str("open = []   # a knockd door opens nothing itself: its commands do\n");
            out.push_str("protect = false\n");
            out.push_str(&format!(
                "open_for = {}   # knockd's Cmd_Timeout; a door that opens nothing has no grant it times\n",
                d.spec.open_for.as_secs()
            ));
            let commands = [
                ("start_command", &d.start_command),
                ("start_command_6", &d.start_command_6),
                ("stop_command", &d.stop_command),
                ("stop_command_6", &d.stop_command_6),
            ];
            if commands.iter().any(|(_, c)| c.is_some()) {
                out.push_str("shell = true\n");
            }
            for (key, cmd) in commands {
                match cmd {
                    Some(Command::Shell(s)) => out.push_str(&format!("{key} = {}\n", quote(s))),
                    Some(Command::Argv(v)) => {
                        out.push_str(&format!("{key} = {}\n", quote(&v.join(" "))))
                    }
                    None => {}
                }
            }
            if d.stop_command.is_some() || d.stop_command_6.is_some() {
                out.push_str(&format!(
                    "stop_after = {}   # knockd's Cmd_Timeout\n",
                    d.stop_after.as_secs()
                ));
            }
        }
        out
    }
}
