//! `knocker`: the client. It sends knocks (compatible with the `knock` client, so knockd and
//! knockerd's sequence doors see what they expect) and keeps named profiles of saved sequences.
//!
//! This file is the command line only: clap definitions (the one source of `--help`), and the
//! glue from arguments to [`knock`] (sending) and [`profile`] (the profiles file).
#![forbid(unsafe_code)]

mod knock;
mod profile;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use knocker_engine::{Proto, Service};

use crate::knock::Family;
use crate::profile::{Profile, ProfileError, Store};

const PORT_SYNTAX: &str = "\
PORT is `7000` (TCP, or UDP with -u), `7000:udp` or `7000:tcp` (as with `knock`), \
`udp/7000` or `7000/udp`.";

const PROFILES_HELP: &str = "\
Profiles:
  Saved sequences live in $KNOCKER_CONFIG_DIR/profiles.toml if that variable is set, else in
  $XDG_CONFIG_HOME/knocker/profiles.toml, else in ~/.config/knocker/profiles.toml. `knocker
  profile add` writes it (mode 0600, in a directory made 0700, replaced atomically, comments
  kept); it may also be edited by hand:

    [profile.myserver]
    host = \"server.example.org\"
    sequence = [\"7000\", \"9000:udp\", \"8000\"]   # same syntax as the command line
    delay_ms = 0        # optional: milliseconds to wait after each knock
    family = \"any\"      # optional: \"any\", \"4\" or \"6\"

  A port in `sequence` that names no protocol is TCP. A mistake in the file is reported as
  file:line:column.";

const EXAMPLES: &str = "\
Examples:
  knocker knock server.example.org 7000 8000 9000
  knocker knock -v -d 100 203.0.113.7 7000 9000:udp 8000
  knocker knock -6 -u server.example.org 7000 8000:tcp 9000
  knocker profile add myserver server.example.org 7000 9000:udp 8000
  knocker knock myserver && ssh server.example.org";

#[derive(Parser, Debug)]
#[command(
    name = "knocker",
    version,
    about = "Port-knocking client: send knocks, keep named knock profiles",
    long_about = "Port-knocking client: sends knock sequences (one TCP SYN or one UDP datagram per \
port, as the `knock` client does, so knockd and knockerd's sequence doors understand them) and \
keeps named profiles, so that `knocker knock myserver` knocks a saved sequence.",
    after_long_help = format!("{PROFILES_HELP}\n\n{EXAMPLES}"),
    after_help = "Run `knocker help knock` or `knocker --help` for the profiles file format and examples."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Knock on HOST's ports, in order, or knock a saved profile
    #[command(
        long_about = format!("Knocks on HOST: for each PORT in order, one TCP SYN (a connection attempt \
that is abandoned at once, so the SYN is neither completed nor retransmitted) or one UDP datagram \
of one byte. HOST is a name, an IPv4 address or an IPv6 address; a name is resolved once, so every \
knock goes to the same address.\n\n{PORT_SYNTAX}\n\nWith no PORT, HOST names a saved profile: its \
host and sequence are knocked, and -d, -4 or -6 given here override the profile's own (-u does \
not apply: a profile's ports name their protocol). With PORTs, HOST is always a host, even if a \
profile has that name.\n\nPrints nothing unless -v, and exits 0 once every knock is sent: a knock \
gets no answer, so knocker cannot tell whether a door opened."),
        after_long_help = format!("{EXAMPLES}\n\n{PROFILES_HELP}"),
    )]
    Knock(KnockArgs),
    /// Add, list, show or remove saved profiles
    #[command(subcommand, after_long_help = PROFILES_HELP)]
    Profile(ProfileCommand),
}

/// How knocks are sent: shared by `knock` and `profile add`, which stores them.
#[derive(Args, Debug)]
struct SendOpts {
    /// Make UDP the protocol of ports that name none (default: TCP)
    #[arg(short = 'u', long = "udp")]
    udp: bool,
    /// Wait MS milliseconds after each knock (also after the last, giving the door time to open)
    #[arg(short = 'd', long = "delay", value_name = "MS")]
    delay: Option<u32>,
    /// Use an IPv4 address of HOST
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    ipv4: bool,
    /// Use an IPv6 address of HOST
    #[arg(short = '6', long = "ipv6")]
    ipv6: bool,
}

impl SendOpts {
    fn default_proto(&self) -> Proto {
        if self.udp {
            Proto::Udp
        } else {
            Proto::Tcp
        }
    }

    /// The family asked for on the command line, if any.
    fn family(&self) -> Option<Family> {
        match (self.ipv4, self.ipv6) {
            (true, _) => Some(Family::V4),
            (_, true) => Some(Family::V6),
            _ => None,
        }
    }
}

#[derive(Args, Debug)]
struct KnockArgs {
    #[command(flatten)]
    send: SendOpts,
    /// Print each knock as it is sent: `hitting tcp 10.200.1.1:7000`
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Host name or address to knock on, or the name of a saved profile
    #[arg(value_name = "HOST|PROFILE")]
    host: String,
    /// Ports to knock, in order: PORT[:tcp|:udp]
    #[arg(value_name = "PORT")]
    ports: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum ProfileCommand {
    /// Save a knock sequence as NAME (-u, -d, -4 and -6 are saved with it)
    #[command(long_about = format!("Saves a knock sequence as NAME, so that `knocker knock NAME` \
knocks PORTs on HOST. -d, -4 and -6 are saved with it; -u decides the protocol of PORTs that name \
none, and the profile records each port's protocol.\n\n{PORT_SYNTAX}"))]
    Add(ProfileAddArgs),
    /// List saved profiles: name, host and sequence
    #[command(visible_alias = "ls")]
    List,
    /// Print one profile as it is written in profiles.toml
    Show {
        /// Profile name
        name: String,
    },
    /// Delete a saved profile
    #[command(visible_alias = "rm")]
    Remove {
        /// Profile name
        name: String,
    },
}

#[derive(Args, Debug)]
struct ProfileAddArgs {
    #[command(flatten)]
    send: SendOpts,
    /// Replace a profile that already has this name
    #[arg(short = 'f', long = "force")]
    force: bool,
    /// Profile name: letters, digits, '.', '_' and '-'
    name: String,
    /// Host name or address the profile knocks on
    host: String,
    /// Ports to knock, in order: PORT[:tcp|:udp]
    #[arg(value_name = "PORT", required = true)]
    ports: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    BadPort(#[from] knock::BadPort),
    #[error(transparent)]
    Knock(#[from] knock::KnockError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error("no ports to knock on {host:?}, and no profile of that name in {}: give PORTs, or save one with `knocker profile add {host} HOST PORT...`", .path.display())]
    NoPorts {
        host: String,
        path: std::path::PathBuf,
    },
}

impl Error {
    /// 2 for what the user typed, 1 for what happened (resolving, sending, the profiles file),
    /// like clap's own usage errors and `knock`'s failures.
    fn exit_code(&self) -> u8 {
        match self {
            Error::BadPort(_)
            | Error::NoPorts { .. }
            | Error::Profile(ProfileError::BadName(_) | ProfileError::BadHost(_)) => 2,
            _ => 1,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Knock(args) => knock(args),
        Command::Profile(command) => profile(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("knocker: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn knock(args: KnockArgs) -> Result<(), Error> {
    let (host, sequence, delay_ms, family) = if args.ports.is_empty() {
        let store = Store::from_env()?;
        let Some(saved) = store.load()?.remove(&args.host) else {
            return Err(Error::NoPorts {
                host: args.host,
                path: store.path().to_path_buf(),
            });
        };
        (
            saved.host,
            saved.sequence,
            args.send.delay.unwrap_or(saved.delay_ms),
            args.send.family().unwrap_or(saved.family),
        )
    } else {
        let sequence = knock::parse_sequence(&args.ports, args.send.default_proto())?;
        (
            args.host,
            sequence,
            args.send.delay.unwrap_or(0),
            args.send.family().unwrap_or_default(),
        )
    };
    let ip = knock::resolve(&host, family)?;
    knock::knock_sequence(
        ip,
        &sequence,
        Duration::from_millis(delay_ms.into()),
        |proto, addr| {
            if args.verbose {
                println!("hitting {proto} {addr}");
            }
        },
    )?;
    Ok(())
}

fn profile(command: ProfileCommand) -> Result<(), Error> {
    let store = Store::from_env()?;
    match command {
        ProfileCommand::Add(args) => {
            let sequence = knock::parse_sequence(&args.ports, args.send.default_proto())?;
            let saved = Profile {
                host: args.host,
                sequence,
                delay_ms: args.send.delay.unwrap_or(0),
                family: args.send.family().unwrap_or_default(),
            };
            store.add(&args.name, &saved, args.force)?;
        }
        ProfileCommand::List => {
            let profiles = store.load()?;
            let name_width = profiles.keys().map(String::len).max().unwrap_or(0);
            let host_width = profiles.values().map(|p| p.host.len()).max().unwrap_or(0);
            for (name, saved) in &profiles {
                println!(
                    "{name:name_width$}  {:host_width$}  {}",
                    saved.host,
                    sequence_text(&saved.sequence)
                );
            }
        }
        ProfileCommand::Show { name } => {
            print!("{}", profile::render(&name, &store.get(&name)?));
        }
        ProfileCommand::Remove { name } => store.remove(&name)?,
    }
    Ok(())
}

fn sequence_text(sequence: &[Service]) -> String {
    let ports: Vec<String> = sequence.iter().map(|s| knock::knock_syntax(*s)).collect();
    ports.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn knock_takes_knocks_options_anywhere() {
        let cli = Cli::try_parse_from([
            "knocker", "knock", "-u", "-d", "200", "host", "7000", "-6", "8000:tcp", "-v",
        ])
        .expect("parses");
        let Command::Knock(args) = cli.command else {
            panic!("not knock")
        };
        assert!(args.verbose);
        assert_eq!(args.send.delay, Some(200));
        assert_eq!(args.send.family(), Some(Family::V6));
        assert_eq!(args.host, "host");
        assert_eq!(
            knock::parse_sequence(&args.ports, args.send.default_proto()).expect("ports"),
            vec![Service::udp(7000), Service::tcp(8000)]
        );
    }

    #[test]
    fn four_and_six_conflict() {
        assert!(Cli::try_parse_from(["knocker", "knock", "-4", "-6", "h", "1"]).is_err());
    }

    #[test]
    fn profile_add_needs_ports() {
        assert!(Cli::try_parse_from(["knocker", "profile", "add", "n", "h"]).is_err());
        assert!(Cli::try_parse_from(["knocker", "profile", "add", "n", "h", "1"]).is_ok());
    }

    #[test]
    fn long_help_documents_the_profiles_file() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("[profile.myserver]"), "{help}");
        assert!(help.contains("KNOCKER_CONFIG_DIR"), "{help}");
        assert!(help.contains("Examples:"), "{help}");
    }
}
