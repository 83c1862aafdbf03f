//! knockerd: the knock daemon. Binds no port; sees knocks through the firewall's NFLOG and grants
//! access through nftables set elements that the kernel expires by itself.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// `knockerd demo`: the only part of the binary that links the lab (knocker-lab), kept out of
/// the daemon's library.
mod demo;

/// Prints a line to stdout; a closed pipe (`knockerd check | head`) ends the output quietly
/// instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
use knockerd::config::knockd;
use knockerd::config::loader::{self, ConfigFile};
use knockerd::config::{self, fmt_duration, DEFAULT_CONFIG, TABLE};
use knockerd::frontends;
use knockerd::ruleset::{
    self, TableSpec, FORWARD_CHAIN, FORWARD_PRIORITY, NAT_CHAIN, NAT_PRIORITY, PRIORITY, SET4, SET6,
};

#[derive(Parser)]
#[command(
    name = "knockerd",
    version,
    long_version = knocker_manual::long_version(env!("CARGO_PKG_VERSION")),
    about = "Port-knocking daemon: opens a service to one address, for a short time, to whoever knocks right",
    long_about = "knockerd keeps services closed and silent, and opens one service to one source address for \
a short time when that address knocks the secret sequence. It binds no port: knock packets are dropped \
and logged by knockerd's own nftables table (inet knocker) and read from NFLOG. Grants are nftables set \
elements with a timeout, so the kernel closes them on time even if knockerd dies.\n\n\
Without a subcommand, knockerd runs in the foreground (for systemd) and logs one line per event to stderr. \
SIGTERM/SIGINT stop it (exit 0); SIGHUP reloads the configuration (a bad one is refused and the running one kept).",
    after_help = "Examples:\n  knockerd check                      validate /etc/knocker/knockerd.toml and show what it does\n  knockerd --config ./k.toml -v       run in the foreground with detail\n  knockerd status                     is knockerd running, what is open, what stops are pending\n  knockerd reload                     reload the configuration; fails if it was refused\n  knockerd teardown                   remove knocker's nftables table\n  knockerd --knockd-conf /etc/knockd.conf   run an existing knockd configuration as it is\n  knockerd --knockknock-profiles /etc/knockknock.d --kernel-log   knockknock's profiles, knocks read from the kernel log\n  knockerd import-knockd /etc/knockd.conf   print it as knockerd's own TOML\n  knockerd demo                       self-contained demo in network namespaces (root)"
)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
    /// More detail in the log: -v shows each knock's progress, -vv every packet seen
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Run the daemon without acting: the worker reads its source and the doors decide as
    /// usual, and each grant is logged as "would grant", but no table is loaded, no set
    /// element added, no ledger written and no command run. knockerd's table is not loaded, so
    /// with the NFLOG source only the admin's own `log group N` rules reach it (the packet
    /// source sees knocks by itself)
    #[arg(long)]
    dry_run: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

/// How the admin's commands find the daemon: its configuration, and its state directory.
#[derive(Args, Default)]
struct FindArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    state: StateArgs,
}

/// What the daemon takes (and `check`, which shows what it would do).
#[derive(Args, Default)]
struct RunArgs {
    #[command(flatten)]
    find: FindArgs,
    #[command(flatten)]
    daemon: DaemonArgs,
}

/// Which configuration knockerd reads: its own TOML, or an incumbent's files as they are. The
/// top level takes these (for the daemon, and before any subcommand that reads a
/// configuration), and so does each subcommand that reads one: `knockerd --config F check`
/// and `knockerd check --config F` are the same.
#[derive(Args, Default)]
struct ConfigArgs {
    /// Configuration file (TOML) [default: /etc/knocker/knockerd.toml]
    #[arg(help_heading = CONFIG_HEADING, short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Run a knockd configuration (knockd.conf) as it is, instead of knockerd's own TOML
    #[arg(help_heading = CONFIG_HEADING, long, value_name = "FILE", conflicts_with = "config")]
    knockd_conf: Option<PathBuf>,
    /// Run fwknopd's access.conf as it is: fwknop clients work unchanged
    #[arg(help_heading = CONFIG_HEADING, long, value_name = "FILE", conflicts_with_all = ["config", "knockd_conf"])]
    fwknop_access: Option<PathBuf>,
    /// With --fwknop-access: fwknopd.conf, for the SPA port (PCAP_FILTER), MAX_SPA_PACKET_AGE,
    /// ENABLE_SPA_PACKET_AGING and PCAP_INTF
    #[arg(help_heading = CONFIG_HEADING, long, value_name = "FILE", requires = "fwknop_access")]
    fwknopd_conf: Option<PathBuf>,
    /// With --fwknop-access: run stanzas without an HMAC key (fwknop's legacy mode, clients
    /// without --use-hmac), which are refused otherwise. Weaker: their packets are decrypted
    /// before anything authenticates them (SECURITY.md). Warns at start and, at most once a
    /// minute, for packets taken; for switching daemons before the clients
    #[arg(help_heading = CONFIG_HEADING, long, requires = "fwknop_access")]
    fwknop_allow_legacy: bool,
    /// With --fwknop-access and fwknopd.conf's ENABLE_IPT_FORWARDING Y: a network (CIDR, IPv4)
    /// whose hosts a client's own NAT request (fwknop -N HOST:PORT) may name in a stanza without
    /// FORCE_NAT; repeat it for more. The stanza's first requested port is then DNAT'd there for
    /// that client alone, until its grant ends. Without it, such requests are refused. List only
    /// the inner hosts clients may reach: never this host's own networks towards them
    #[arg(help_heading = CONFIG_HEADING, long, value_name = "CIDR", requires = "fwknop_access", value_parser = parse_nat_target)]
    fwknop_nat_targets: Vec<config::Net>,
    /// Run knockknock's profiles as they are (DIR is knockknock's /etc/knockknock.d: its config
    /// and profiles/): knockknock clients work unchanged
    #[arg(help_heading = CONFIG_HEADING, long, value_name = "DIR", conflicts_with_all = ["config", "knockd_conf", "fwknop_access"])]
    knockknock_profiles: Option<PathBuf>,
    /// With --knockknock-profiles: see the knocks in the kernel log, as knockknock does
    /// (/dev/kmsg; --kernel-log-file for a file such as kern.log), not through NFLOG. knockerd's
    /// table then logs each knock port's SYNs with `flags tcp sequence`
    #[arg(help_heading = CONFIG_HEADING, long, requires = "knockknock_profiles")]
    kernel_log: bool,
    /// With --kernel-log: read this file (e.g. /var/log/kern.log) instead of /dev/kmsg
    #[arg(help_heading = CONFIG_HEADING, long, value_name = "FILE", requires = "kernel_log")]
    kernel_log_file: Option<PathBuf>,
    /// With --kernel-log: your own LOG rule's prefix (knockknock's INSTALL writes "REJECT "), so
    /// that its lines count too, besides those of knockerd's table
    #[arg(help_heading = CONFIG_HEADING, long, value_name = "PREFIX", requires = "kernel_log")]
    log_prefix: Option<String>,
}

/// The help's heading of the options that choose the configuration.
const CONFIG_HEADING: &str =
    "Configuration (knockerd's own, or one of knockd's, fwknopd's or knockknock's)";

/// knockerd's own TOML only: the subcommands that read its `server_key` and `clients`.
#[derive(Args, Default)]
struct NativeConfigArg {
    /// Configuration file (TOML) [default: /etc/knocker/knockerd.toml]
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Where the ledger, the pid file and the reload verdict are.
#[derive(Args, Default)]
struct StateArgs {
    /// Keep the ledger (pending stop commands, used sequences), the pid file and the last
    /// reload's verdict in DIR instead of the configuration's `state_dir` (default
    /// /var/lib/knocker); status, reload and teardown look for the daemon there
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

/// What the running daemon (and `check`, which shows what it would do) takes besides the file.
#[derive(Args, Default)]
struct DaemonArgs {
    /// The unprivileged user knockerd's packet worker runs as (it reads and judges every packet;
    /// the root process only applies what it decides, after checking it)
    /// (default: `[daemon] worker_user`, else nobody)
    #[arg(long, value_name = "USER")]
    worker_user: Option<String>,
    /// A source that knocker's protection never drops (the admin's management network, a VPN),
    /// as CIDR (192.0.2.0/24, 2001:db8::/32) or one address; repeat it for more. Added to
    /// `[daemon] trusted`; the one way to trust a source with --knockd-conf or --fwknop-access
    #[arg(long = "trusted", value_name = "CIDR", value_parser = parse_trusted)]
    trusted: Vec<config::Net>,
    /// Also write the metrics (Prometheus text format, for node_exporter's textfile collector)
    /// to FILE, an absolute path ending in .prom; over `[daemon] metrics_file`, and the one way
    /// with --knockd-conf or --fwknop-access. They are always in STATE_DIR/metrics.prom
    /// (`knockerd status --metrics`)
    #[arg(long, value_name = "FILE", value_parser = config::metrics_file)]
    metrics_file: Option<PathBuf>,
}

/// A group of options that can be given before the subcommand or after it.
trait Given {
    /// The options given, as they are written on the command line.
    fn given(&self) -> Vec<&'static str>;
}

impl Given for ConfigArgs {
    fn given(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (set, flag) in [
            (self.config.is_some(), "--config"),
            (self.knockd_conf.is_some(), "--knockd-conf"),
            (self.fwknop_access.is_some(), "--fwknop-access"),
            (self.fwknopd_conf.is_some(), "--fwknopd-conf"),
            (self.fwknop_allow_legacy, "--fwknop-allow-legacy"),
            (!self.fwknop_nat_targets.is_empty(), "--fwknop-nat-targets"),
            (self.knockknock_profiles.is_some(), "--knockknock-profiles"),
            (self.kernel_log, "--kernel-log"),
            (self.kernel_log_file.is_some(), "--kernel-log-file"),
            (self.log_prefix.is_some(), "--log-prefix"),
        ] {
            if set {
                out.push(flag);
            }
        }
        out
    }
}

impl ConfigArgs {
    /// The configuration these options name.
    fn source(self) -> ConfigFile {
        match (
            self.knockd_conf,
            self.fwknop_access,
            self.knockknock_profiles,
        ) {
            (Some(path), _, _) => ConfigFile::Knockd(path),
            (None, Some(access), _) => ConfigFile::Fwknop {
                access,
                fwknopd_conf: self.fwknopd_conf,
                allow_legacy: self.fwknop_allow_legacy,
                nat_networks: self.fwknop_nat_targets,
            },
            (None, None, Some(dir)) => ConfigFile::Knockknock {
                dir,
                kernel_log: self.kernel_log.then_some(loader::KernelLogChoice {
                    file: self.kernel_log_file,
                    prefix: self.log_prefix,
                }),
            },
            (None, None, None) => {
                ConfigFile::Native(self.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)))
            }
        }
    }
}

impl Given for NativeConfigArg {
    fn given(&self) -> Vec<&'static str> {
        self.config.iter().map(|_| "--config").collect()
    }
}

impl Given for StateArgs {
    fn given(&self) -> Vec<&'static str> {
        self.state_dir.iter().map(|_| "--state-dir").collect()
    }
}

impl Given for DaemonArgs {
    fn given(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.worker_user.is_some() {
            out.push("--worker-user");
        }
        if !self.trusted.is_empty() {
            out.push("--trusted");
        }
        if self.metrics_file.is_some() {
            out.push("--metrics-file");
        }
        out
    }
}

/// The option groups a subcommand takes: each is its own, or (when it gave none) the top
/// level's. An option given at the top level that the subcommand does not take is an error,
/// not silently ignored.
#[derive(Default)]
struct Taken {
    config: Option<ConfigArgs>,
    /// keygen and enroll: knockerd's own TOML only
    native_config: Option<NativeConfigArg>,
    state: Option<StateArgs>,
    daemon: Option<DaemonArgs>,
    dry_run: Option<bool>,
}

/// What the command line comes to: the configuration, the options of the run, the command.
struct Resolved {
    source: ConfigFile,
    state_dir: Option<PathBuf>,
    daemon: DaemonArgs,
    dry_run: bool,
}

/// Chooses between the top level's group of options and the subcommand's: the one that gave
/// something (the subcommand's when neither did). `None` when the subcommand does not take the
/// group, and what the top level gave of it is stray.
fn choose<T: Given>(
    top: T,
    sub: Option<T>,
    stray: &mut Vec<&'static str>,
    twice: &mut Vec<&'static str>,
) -> Option<T> {
    let top_given = top.given();
    let Some(sub) = sub else {
        stray.extend(top_given);
        return None;
    };
    let sub_given = !sub.given().is_empty();
    let top_empty = top_given.is_empty();
    if sub_given && !top_empty {
        twice.extend(top_given);
    }
    Some(if top_empty || sub_given { sub } else { top })
}

impl Cli {
    /// Merges the top level's options with those the subcommand `name` takes (`taken`).
    fn resolve(self, name: &str, taken: Taken) -> Result<Resolved, String> {
        let (mut stray, mut twice) = (Vec::new(), Vec::new());
        let top = self.run.find.config;
        let source = match (taken.config, taken.native_config) {
            (Some(sub), _) => choose(top, Some(sub), &mut stray, &mut twice),
            (None, Some(sub)) => {
                // keygen and enroll read knockerd's own TOML: --config only
                let mut given = top.given();
                given.retain(|f| *f != "--config");
                stray.extend(given);
                let top = NativeConfigArg { config: top.config };
                choose(top, Some(sub), &mut stray, &mut twice).map(|n| ConfigArgs {
                    config: n.config,
                    ..ConfigArgs::default()
                })
            }
            (None, None) => choose(top, None, &mut stray, &mut twice),
        }
        .unwrap_or_default()
        .source();
        let state = choose(self.run.find.state, taken.state, &mut stray, &mut twice);
        let daemon = choose(self.run.daemon, taken.daemon, &mut stray, &mut twice);
        let dry_run = match taken.dry_run {
            Some(sub) => sub || self.dry_run,
            None => {
                if self.dry_run {
                    stray.push("--dry-run");
                }
                false
            }
        };
        if let Some(flag) = twice.first() {
            return Err(format!(
                "{flag} is given both before and after `{name}`: give it once"
            ));
        }
        if !stray.is_empty() {
            return Err(format!(
                "`knockerd {name}` does not take {}: remove {}",
                stray.join(", "),
                if stray.len() == 1 { "it" } else { "them" }
            ));
        }
        Ok(Resolved {
            source,
            state_dir: state.and_then(|s| s.state_dir),
            daemon: daemon.unwrap_or_default(),
            dry_run,
        })
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon in the foreground (the default)
    Run {
        #[command(flatten)]
        run: RunArgs,
        /// Run without acting: grants are logged as "would grant", nothing is loaded, added,
        /// written or run (see `knockerd --help`)
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate the configuration and print what the daemon will do; warn about other firewall
    /// chains that would drop granted packets anyway (naming ufw and firewalld, with the step
    /// each needs), and about what may lock you out. Exits
    /// non-zero for whatever would stop the daemon from starting (no door, no worker user, no
    /// nft, an unreadable server key, no clients file for spa/syn doors, a log file others can
    /// write to)
    Check {
        #[command(flatten)]
        run: RunArgs,
        /// Also run the configured source's parser over the lines of FILE (sample lines of the
        /// log a kernel-log or log-file source reads) and print, per line, the knock it yields
        /// or why it yields none
        #[arg(long, value_name = "FILE")]
        log_sample: Option<PathBuf>,
    },
    /// Show whether knockerd runs, the grants open right now (door, address, service, time
    /// left), command-only doors' openings and pending stop commands. Exits non-zero when
    /// knockerd is not running or its table is missing
    Status {
        #[command(flatten)]
        find: FindArgs,
        /// Print one JSON object (its shape is documented in the README and stays stable)
        #[arg(long, conflicts_with = "metrics")]
        json: bool,
        /// Print the metrics knockerd last wrote (Prometheus text format: knocks seen, refusals
        /// by reason, grants, refreshes, expiries, stop commands per door; overruns, worker
        /// restarts, table restores), from STATE_DIR/metrics.prom
        #[arg(long)]
        metrics: bool,
    },
    /// Reload the running knockerd's configuration and wait for its verdict: exits non-zero,
    /// with the reason, when the new configuration was refused (the running one is kept)
    Reload {
        #[command(flatten)]
        find: FindArgs,
    },
    /// Remove knocker's nftables table and its include file. Open grants end, and knock and
    /// protected ports are no longer dropped by knocker: whatever else the firewall says applies.
    /// Refused while knockerd runs (stop it first: `systemctl stop knockerd`), unless --force
    Teardown {
        #[command(flatten)]
        find: FindArgs,
        /// Stop the running knockerd first (SIGTERM; it would put its table back at once)
        #[arg(long)]
        force: bool,
    },
    /// Print a knockd configuration as knockerd's own TOML, with a note wherever the meaning differs
    ImportKnockd {
        /// The knockd.conf to convert
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print fwknopd's access.conf as knockerd's own TOML (keys go into key files, never into the
    /// TOML), with a note wherever the meaning differs
    ImportFwknop {
        /// The access.conf to convert
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// fwknopd.conf, for the SPA port (PCAP_FILTER), MAX_SPA_PACKET_AGE,
        /// ENABLE_SPA_PACKET_AGING and PCAP_INTF
        #[arg(long, value_name = "FILE")]
        fwknopd_conf: Option<PathBuf>,
    },
    /// Print knockknock's profiles (DIR is knockknock's /etc/knockknock.d) as knockerd's own TOML:
    /// one `kind = "knockknock"` door per profile, read where it is
    ImportKnockknock {
        /// knockknock's directory, with its config and profiles/
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Make the server's key pair for `spa` and `syn` doors (the private key as a 0600 file at the
    /// configuration's `server_key`, default /etc/knocker/server.key) and print its public key
    Keygen {
        #[command(flatten)]
        config: NativeConfigArg,
        /// Write the key here instead of the configuration's `server_key`
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// Replace an existing key: every enrolled client needs a new profile afterwards
        #[arg(long)]
        force: bool,
    },
    /// Enroll a client for the `spa` and `syn` doors: add its public key to the clients file and
    /// print the profile it needs (as TOML and as a QR code). Reload knockerd afterwards
    /// (`systemctl reload knockerd`); to revoke, delete the client's table and reload
    #[command(
        after_help = "Example:\n  on the client:  knocker keygen --identity\n  on the server:  knockerd enroll alice --public-key 'BASE64...' --server server.example.org\n  on the client:  append the printed profile to ~/.config/knocker/profiles.toml (or scan the QR code)"
    )]
    Enroll {
        #[command(flatten)]
        config: NativeConfigArg,
        /// The client's name, as the log will show it (letters, digits, '-', '_')
        #[arg(value_name = "NAME")]
        name: String,
        /// The client's public key, as `knocker keygen --identity` prints it
        #[arg(long, value_name = "KEY")]
        public_key: String,
        /// The address or host name clients use to reach this server
        #[arg(long, value_name = "HOST")]
        server: String,
        /// Enroll for these doors only (repeat the option); default: every spa and syn door in the
        /// configuration now (the clients file lists them, so a door added later needs re-enrolling)
        #[arg(long = "door", value_name = "DOOR")]
        doors: Vec<String>,
        /// Do not print the QR code
        #[arg(long)]
        no_qr: bool,
        /// Also write the profiles to FILE (mode 0600, never overwritten), to hand to the client
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Run the doors over recorded packets (a pcap or pcapng file, e.g. from `tcpdump -w`) on
    /// their own timestamps and print what would be granted and refused, and why, one line per
    /// event (`t=SECONDS grant door=NAME src=ADDR open=SERVICES for=DURATION`, `t=SECONDS refuse
    /// door=NAME src=ADDR reason="..."`). Touches no firewall, ledger or command; needs no root.
    /// Link types: Ethernet, Linux cooked (SLL, SLL2: `tcpdump -i any`), raw IP
    Replay {
        #[command(flatten)]
        config: ConfigArgs,
        /// The capture file
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// The packet worker, started by knockerd itself (not for use by hand)
    #[command(hide = true)]
    PacketWorker {
        #[command(flatten)]
        find: FindArgs,
        /// The knockerd that started it
        #[arg(long)]
        parent: u32,
        /// Who to become once NFLOG is bound
        #[arg(long)]
        user: String,
    },
    /// Write the man pages and shell completions made from this command line to DIR/man and
    /// DIR/completions, with knockerd.toml(5) from the configuration's reference (packaging/
    /// holds the packaged copies, which the tests compare)
    #[command(hide = true)]
    Manuals {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also write the reference as Markdown, to DOCS/knockerd.toml.md
        #[arg(long, value_name = "DOCS")]
        docs: Option<PathBuf>,
    },
    /// Run the self-contained demo: three network namespaces, real knockerd, real packets (root)
    Demo {
        /// Seconds the demo door stays open
        #[arg(long, default_value_t = 4)]
        open_for: u64,
    },
}

impl Cmd {
    /// The subcommand's name and the option groups it takes, moved out of it.
    fn take(&mut self) -> (&'static str, Taken) {
        use std::mem::take;
        match self {
            Cmd::Run { run, dry_run } => (
                "run",
                Taken {
                    dry_run: Some(*dry_run),
                    ..Taken::daemon(run)
                },
            ),
            Cmd::Check { run, .. } => ("check", Taken::daemon(run)),
            Cmd::Status { find, .. } => ("status", Taken::find(find)),
            Cmd::Reload { find } => ("reload", Taken::find(find)),
            Cmd::Teardown { find, .. } => ("teardown", Taken::find(find)),
            Cmd::PacketWorker { find, .. } => ("packet-worker", Taken::find(find)),
            Cmd::Replay { config, .. } => (
                "replay",
                Taken {
                    config: Some(take(config)),
                    ..Taken::default()
                },
            ),
            Cmd::Keygen { config, .. } => ("keygen", Taken::native(config)),
            Cmd::Enroll { config, .. } => ("enroll", Taken::native(config)),
            Cmd::ImportKnockd { .. } => ("import-knockd", Taken::default()),
            Cmd::ImportFwknop { .. } => ("import-fwknop", Taken::default()),
            Cmd::ImportKnockknock { .. } => ("import-knockknock", Taken::default()),
            Cmd::Manuals { .. } => ("manuals", Taken::default()),
            Cmd::Demo { .. } => ("demo", Taken::default()),
        }
    }
}

impl Taken {
    fn daemon(run: &mut RunArgs) -> Taken {
        Taken {
            daemon: Some(std::mem::take(&mut run.daemon)),
            ..Taken::find(&mut run.find)
        }
    }

    fn find(find: &mut FindArgs) -> Taken {
        Taken {
            config: Some(std::mem::take(&mut find.config)),
            state: Some(std::mem::take(&mut find.state)),
            ..Taken::default()
        }
    }

    fn native(config: &mut NativeConfigArg) -> Taken {
        Taken {
            native_config: Some(std::mem::take(config)),
            ..Taken::default()
        }
    }
}

fn init_logging(verbose: u8, extra: knockd::log::KnockdLog) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KNOCKERD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("knockerd={level},warn")));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // Under systemd the journal adds its own timestamps.
    let fmt = if std::env::var_os("JOURNAL_STREAM").is_some() {
        fmt.without_time().boxed()
    } else {
        fmt.boxed()
    };
    // `extra` carries knockd.conf's LogFile and UseSyslog; it writes nothing for native configs.
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(extra)
        .init();
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let mut command = cli.command.take().unwrap_or(Cmd::Run {
        run: RunArgs::default(),
        dry_run: false,
    });
    let verbose = cli.verbose;
    let (name, taken) = command.take();
    let resolved = match cli.resolve(name, taken) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("knockerd: {e}");
            return ExitCode::from(2);
        }
    };
    let source = resolved.source;
    // knockd.conf's UseSyslog, LogFile and PidFile apply to the running daemon only; a config
    // that does not load is reported by run() itself.
    let options = match (&source, &command) {
        (ConfigFile::Knockd(_), Cmd::Run { .. } | Cmd::PacketWorker { .. }) => {
            loader::load(&source)
                .ok()
                .and_then(|l| l.knockd)
                .unwrap_or_default()
        }
        _ => knockd::KnockdOptions::default(),
    };
    let (extra, problems) = knockd::log::KnockdLog::new(&options);
    knockd::log::register_log(&extra);
    init_logging(verbose, extra);
    for p in problems {
        tracing::warn!("{p}");
    }
    // where the pid file, the ledger and the reload verdict are, for status, reload, teardown
    let state_dir = knockerd::control::state_dir(&source, resolved.state_dir.as_deref());
    let overrides = knockerd::daemon::Overrides {
        state_dir: resolved.state_dir,
        verbose,
        worker_user: resolved.daemon.worker_user,
        trusted: resolved.daemon.trusted,
        metrics_file: resolved.daemon.metrics_file,
        dry_run: resolved.dry_run,
    };
    let result = match command {
        Cmd::Run { .. } => match options
            .pid_file
            .as_deref()
            .map(knockd::log::write_pid_file)
            .transpose()
        {
            // the guard removes the pid file when the daemon returns
            Ok(_pid) => knockerd::daemon::run(&source, &overrides).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Cmd::Check { log_sample, .. } => check(&source, &overrides, log_sample.as_deref()),
        Cmd::Replay { file, .. } => knockerd::source::replay::run(&source, &overrides, &file),
        Cmd::PacketWorker { parent, user, .. } => {
            knockerd::privsep::run(&source, &overrides, &user, parent).map_err(|e| e.to_string())
        }
        Cmd::ImportFwknop { file, fwknopd_conf } => {
            match knockerd::config::fwknop::import(&file, fwknopd_conf.as_deref()) {
                Ok((toml, warnings)) => {
                    for w in warnings {
                        eprintln!("knockerd: warning: {w}");
                    }
                    out!("{toml}");
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Cmd::ImportKnockd { file } => import_knockd(&file),
        Cmd::ImportKnockknock { dir } => knockerd::config::knockknock::import(&dir)
            .map(|toml| print!("{toml}"))
            .map_err(|e| e.to_string()),
        Cmd::Status { metrics: true, .. } => {
            knockerd::status::run_metrics(&state_dir).map_err(|e| e.to_string())
        }
        Cmd::Status { json, .. } => {
            knockerd::status::run(&state_dir, json).map_err(|e| e.to_string())
        }
        Cmd::Reload { .. } => {
            knockerd::control::request_reload(&state_dir, knockerd::control::RELOAD_WAIT)
                .map(|m| out!("{m}"))
                .map_err(|e| e.to_string())
        }
        Cmd::Teardown { force, .. } => knockerd::control::teardown(&state_dir, force)
            .map(|m| out!("{m}"))
            .map_err(|e| e.to_string()),
        Cmd::Demo { open_for } => demo::run(open_for).map(|_| ()),
        Cmd::Manuals { out, docs } => manuals(&out, docs.as_deref()),
        Cmd::Keygen { file, force, .. } => keygen(&source, file, force),
        Cmd::Enroll {
            config: _,
            name,
            public_key,
            server,
            doors,
            no_qr,
            out,
        } => enroll(
            &source,
            &name,
            &public_key,
            &server,
            &doors,
            no_qr,
            out.as_deref(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("knockerd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The native configuration's path, for the commands that only make sense with one.
fn native_path<'a>(source: &'a ConfigFile, what: &str) -> Result<&'a std::path::Path, String> {
    match source {
        ConfigFile::Native(path) => Ok(path),
        _ => Err(format!(
            "{what} is for knockerd's own configuration (spa and syn doors), not for --knockd-conf or --fwknop-access"
        )),
    }
}

/// `knockerd manuals`: the command line's pages and completions, and knockerd.toml(5) (and its
/// Markdown, for the docs) from the configuration's reference.
fn manuals(out: &Path, docs: Option<&Path>) -> Result<(), String> {
    use knockerd::config::native::reference::KNOCKERD_TOML;
    fn at(dir: &Path) -> impl Fn(std::io::Error) -> String + '_ {
        move |e| format!("{}: {e}", dir.display())
    }
    let mut files = knocker_manual::write(Cli::command(), "8", out).map_err(at(out))?;
    let page = Path::new("man").join(format!("{}.5", KNOCKERD_TOML.name));
    std::fs::write(
        out.join(&page),
        KNOCKERD_TOML.man_page(env!("CARGO_PKG_VERSION")),
    )
    .map_err(at(out))?;
    files.push(page);
    if let Some(docs) = docs {
        let md = docs.join(format!("{}.md", KNOCKERD_TOML.name));
        std::fs::write(&md, KNOCKERD_TOML.markdown()).map_err(at(docs))?;
        files.push(md);
    }
    files.sort();
    for f in files {
        out!("{}", f.display());
    }
    Ok(())
}

fn keygen(source: &ConfigFile, file: Option<PathBuf>, force: bool) -> Result<(), String> {
    let path = match file {
        Some(f) => f,
        None => {
            native_path(source, "keygen")?;
            loader::key_files(source).map_err(|e| e.to_string())?.0
        }
    };
    let public = knockerd::enroll::server_keygen(&path, force).map_err(|e| e.to_string())?;
    eprintln!(
        "knockerd: wrote the server's private key to {} (mode 0600)",
        path.display()
    );
    out!("{public}");
    Ok(())
}

fn enroll(
    source: &ConfigFile,
    name: &str,
    public_key: &str,
    server: &str,
    doors: &[String],
    no_qr: bool,
    out_file: Option<&std::path::Path>,
) -> Result<(), String> {
    use knockerd::enroll::{EnrollDoor, EnrollKind, EnrollRequest};
    let path = native_path(source, "enroll")?;
    let public_key = knocker_wire::identity::PublicKey::from_base64(public_key)
        .map_err(|e| format!("--public-key: {e}"))?;
    let c = loader::load(source).map_err(|e| e.to_string())?.config;
    let mut chosen = Vec::new();
    for d in &c.doors {
        let kind = match d.kind {
            config::DoorKind::Spa { port } => (EnrollKind::Spa, port),
            config::DoorKind::Syn { port } => (EnrollKind::Syn, port),
            _ => continue,
        };
        if doors.is_empty() || doors.contains(&d.spec.name) {
            chosen.push(EnrollDoor {
                name: d.spec.name.clone(),
                kind: kind.0,
                port: kind.1,
                open: d.spec.open.clone(),
                open_for: match &d.spec.kind {
                    knocker_engine::Kind::Spa(spa) => {
                        Some(std::time::Duration::from_secs(spa.access_timeout))
                    }
                    _ => None,
                },
            });
        }
    }
    if let Some(missing) = doors.iter().find(|n| !chosen.iter().any(|d| &d.name == *n)) {
        return Err(format!(
            "{}: no spa or syn door named {missing:?}",
            path.display()
        ));
    }
    if chosen.is_empty() {
        return Err(format!(
            "{}: no door of kind \"spa\" or \"syn\" to enroll a client for",
            path.display()
        ));
    }
    let server_key = knocker_wire::keyfile::load_key(&c.server_key, |t| {
        knocker_wire::identity::PrivateKey::from_base64(t)
    })
    .map_err(|e| e.to_string())?;
    let profiles = knockerd::enroll::enroll(&EnrollRequest {
        server_key: &server_key,
        clients_path: &c.clients,
        name,
        public_key,
        server_host: server,
        doors: chosen,
    })
    .map_err(|e| e.to_string())?;
    eprintln!(
        "knockerd: enrolled {name} in {}; reload knockerd (SIGHUP) for it to take effect",
        c.clients.display()
    );
    if let Some(file) = out_file {
        knocker_wire::files::create_new_private(file, profiles.as_bytes())
            .map_err(|e| format!("cannot create {}: {e}", file.display()))?;
        eprintln!(
            "knockerd: wrote {name}'s profiles to {} (mode 0600)",
            file.display()
        );
    }
    out!("{profiles}");
    if !no_qr {
        // one code per profile: two profiles in one code make it too wide for most terminals
        let mut chunks: Vec<String> = Vec::new();
        for line in profiles.lines() {
            if line.starts_with("[profile.") {
                chunks.push(String::new());
            }
            if let Some(c) = chunks.last_mut() {
                c.push_str(line);
                c.push('\n');
            }
        }
        for one in &chunks {
            let name = one.lines().next().unwrap_or_default();
            out!(
                "{name} as a QR code:\n{}",
                knockerd::enroll::qr(one.trim_end()).map_err(|e| e.to_string())?
            );
        }
    }
    Ok(())
}

fn list(services: &[knocker_engine::Service]) -> String {
    services
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn import_knockd(file: &std::path::Path) -> Result<(), String> {
    let (toml, warnings) = knockd::import::import(file).map_err(|e| e.to_string())?;
    std::io::Write::write_all(&mut std::io::stdout(), toml.as_bytes())
        .map_err(|e| format!("cannot write the TOML: {e}"))?;
    for w in warnings {
        eprintln!("knockerd: warning: {w}");
    }
    Ok(())
}

fn parse_trusted(text: &str) -> Result<config::Net, config::NetError> {
    text.parse()
}

/// An IPv4 network: fwknop's NAT request names only IPv4 hosts.
fn parse_nat_target(text: &str) -> Result<config::Net, String> {
    let net: config::Net = text.parse().map_err(|e: config::NetError| e.to_string())?;
    if !net.addr.is_ipv4() {
        return Err("fwknop's NAT request names only IPv4 hosts: give an IPv4 network".into());
    }
    Ok(net)
}

fn check(
    source: &ConfigFile,
    overrides: &knockerd::daemon::Overrides,
    log_sample: Option<&std::path::Path>,
) -> Result<(), String> {
    let loader::Loaded {
        config: mut c,
        warnings,
        knockd: options,
    } = loader::load(source).map_err(|e| e.to_string())?;
    overrides.apply(&mut c);
    match &options {
        None => out!("{}: OK", source.path().display()),
        Some(_) => out!(
            "{}: OK (knockd.conf, run as knockd runs it)",
            source.path().display()
        ),
    }
    for w in warnings.iter().chain(&knockerd::lockout::warnings(&c)) {
        out!("warning: {w}");
    }
    if let Some(o) = &options {
        if o.use_syslog {
            out!("logs to syslog too (UseSyslog)");
        }
        if let Some(f) = &o.log_file {
            out!("appends its log to {} too (LogFile)", f.display());
        }
        if let Some(f) = &o.pid_file {
            out!("writes its pid to {} while it runs (PidFile)", f.display());
        }
    }
    if !c.interfaces.is_empty() {
        out!(
            "counts only knocks arriving on {} (unless a door names its own)",
            config::Config::name_interfaces(&c.interfaces)
        );
    }
    let user = c
        .worker_user
        .as_deref()
        .unwrap_or(knockerd::privsep::DEFAULT_USER);
    if let Ok(Some(u)) = nix::unistd::User::from_name(user) {
        out!(
            "reads every packet in a worker that runs as {user} (uid {}), with no capabilities",
            u.uid
        );
    }
    if let Some(shared) = &c.shared_state {
        out!("shares its once-only claims with a fleet in {shared}; while it is down, doors {} unless they say otherwise (shared_state_down)", match shared.down {
            knockerd::fleet::DownPolicy::Refuse => "refuse what needs a fleet-wide claim",
            knockerd::fleet::DownPolicy::Local => "grant on this host's own replay memory",
        });
    }
    for d in &c.doors {
        out!("door {} (line {}):", d.spec.name, d.line);
        if let Some(shared) = &c.shared_state {
            if d.replayable() {
                out!("  a static sequence: makes no claim in the shared store (replayable on every host)");
            } else {
                out!(
                    "  claims each once-only use in the shared store too; while it is down: {}",
                    shared.policy(&d.spec.name).as_str()
                );
            }
        }
        if d.single_packet() {
            out!("  accepts {}", d.describe_knocks());
        } else {
            out!(
                "  knock {} within {}{}",
                d.describe_knocks(),
                fmt_duration(d.spec.window),
                d.spec
                    .tcp_flags
                    .map(|f| format!(", tcp flags {f}"))
                    .unwrap_or_default()
            );
        }
        out!("  {}", d.describe_opening());
        if let Some(cmd) = &d.start_command {
            out!("  runs {cmd} on opening");
        }
        if let Some(cmd) = &d.stop_command {
            out!("  runs {cmd} {} after opening", fmt_duration(d.stop_after));
        }
        if let Some(cmd) = &d.start_command_6 {
            out!("  runs {cmd} on opening to an IPv6 address");
        }
        if let Some(cmd) = &d.stop_command_6 {
            out!(
                "  runs {cmd} {} after opening to an IPv6 address",
                fmt_duration(d.stop_after)
            );
        }
        if let Some(n) = d.connections {
            out!("  each grant admits {n} new connection(s), then the kernel closes it");
        }
        if !d.interfaces.is_empty() {
            out!(
                "  counts knocks only on {}",
                config::Config::name_interfaces(&d.interfaces)
            );
        }
        if !d.protect_elsewhere && d.protect {
            out!(
                "  protects its services only on {} (protect_elsewhere = false): elsewhere your firewall decides",
                config::Config::name_interfaces(c.listens_on(d))
            );
        }
        for (family, len) in [("IPv4", d.grant_prefix.v4), ("IPv6", d.grant_prefix.v6)] {
            if let Some(len) = len {
                out!("  each {family} grant opens to the /{len} around the address that knocked (grant_prefix): everyone in it gets in");
            }
        }
        for a in &d.actions {
            out!("  runs {} {}", a.command, a.when);
        }
        if d.replayable() {
            out!("  warning: a static sequence can be replayed by anyone who records it");
        }
    }
    let watched = c.watched();
    let watched = watched
        .iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(sample) = log_sample {
        check_log_sample(&c, sample)?;
    }
    let logged_to = match &c.source {
        config::SourceSpec::Nflog => Some(format!("NFLOG group {}", c.nflog_group)),
        config::SourceSpec::KernelLog { file, prefix } => Some(format!(
            "the kernel log with prefix {:?}, read from {}{}",
            knockerd::source::kernel_log::OWN_PREFIX,
            file.as_ref()
                .map_or(knockerd::source::kernel_log::KMSG.into(), |f| f
                    .display()
                    .to_string()),
            prefix
                .as_ref()
                .map(|p| format!(" (lines with your prefix {p:?} count too)"))
                .unwrap_or_default()
        )),
        config::SourceSpec::LogFile { .. } => None,
        config::SourceSpec::Packet { interface } => {
            out!(
                "watches ({}seen on interface {interface} by a packet socket, not logged): {watched}",
                if c.drop_knocks {
                    "dropped silently, "
                } else {
                    ""
                }
            );
            None
        }
    };
    match (logged_to, &c.source) {
        (None, config::SourceSpec::Packet { .. }) => {}
        (None, source) => out!(
            "sees knocks in {} with {} format(s) of yours (anyone who can write that file, or get a line into it through syslog, can forge knocks); its table neither logs nor drops knock ports (whoever writes that log sees them): {watched}",
            source.file().map(|f| f.display().to_string()).unwrap_or_default(),
            match source {
                config::SourceSpec::LogFile { formats, .. } => formats.len(),
                _ => 0,
            }
        ),
        (Some(to), _) if c.drop_knocks => {
            out!("watches (dropped silently, logged to {to}): {watched}")
        }
        (Some(to), _) => out!("watches (logged to {to}, not dropped: your firewall decides, as under knockd): {watched}"),
    }
    if c.drop_knocks {
        busy_knock_ports(&c);
    }
    let protected = c.protected();
    if protected.is_empty() {
        out!("protects nothing: the opened services must be closed by your own firewall");
    } else {
        out!(
            "protects (dropped for everyone without a grant): {}",
            list(&protected)
        );
    }
    let forwarded = c.forwarded();
    if !forwarded.is_empty() {
        out!(
            "protects forwarded services (published on this host, e.g. by Docker: dropped for everyone without a grant in chain {FORWARD_CHAIN} at priority {FORWARD_PRIORITY}, before DNAT, by the port a packet is sent to): {}",
            list(&forwarded)
        );
    }
    let routed = c.routed();
    for (hosts, services) in &routed {
        let hosts: Vec<String> = hosts.iter().map(|n| n.to_string()).collect();
        out!(
            "protects routed services (of hosts behind this one, reached without DNAT: dropped for everyone without a grant in chain {FORWARD_CHAIN} at priority {FORWARD_PRIORITY}): {} on {}",
            list(services),
            hosts.join(", ")
        );
    }
    let nat = c.nat_targets();
    if !nat.is_empty() {
        let to: Vec<String> = nat.iter().map(|(s, to)| format!("{s} -> {to}")).collect();
        out!(
            "sends on to inner hosts (DNAT in chain {NAT_CHAIN} at priority {NAT_PRIORITY}, for sources holding a grant only; the inner host must route its answers back through this host, and IP forwarding must be on): {}",
            to.join(", ")
        );
    }
    let client_nat: Vec<&config::Door> = c
        .doors
        .iter()
        .filter(|d| !d.nat_networks.is_empty())
        .collect();
    for d in &client_nat {
        let nets: Vec<String> = d.nat_networks.iter().map(|n| n.to_string()).collect();
        out!(
            "door {} sends a granted client on to the inner host it names itself (fwknop -N: the first port it asks for, DNAT'd by map {} in chain {NAT_CHAIN} at priority {NAT_PRIORITY}, for that source alone and as long as its grant), in {} only (--fwknop-nat-targets; never this host's own addresses); the inner host must route its answers back through this host, and IP forwarding must be on",
            d.spec.name,
            ruleset::CLIENT_NAT4,
            nets.join(", ")
        );
    }
    for (to, proto, source) in c.nat_sources() {
        let from = match source {
            config::NatSource::Masquerade => "the server's own address (masquerade)".to_string(),
            config::NatSource::Address(a) => a.to_string(),
        };
        out!(
            "connections sent on to {to} ({proto}) leave from {from} (nat_source, in chain {} at priority {}): the inner host sees this host, not the client",
            ruleset::SNAT_CHAIN,
            ruleset::SNAT_PRIORITY
        );
    }
    check_way_in(
        &c,
        !protected.is_empty() || !forwarded.is_empty() || !routed.is_empty(),
    );
    out!(
        "keeps at most {} partial knocks in memory; on a clean stop, open grants are {}",
        c.max_tracked,
        match c.on_stop {
            config::OnStop::Keep => "kept until they time out",
            config::OnStop::Withdraw => "withdrawn",
        }
    );
    if c.grant_mark != 0 {
        out!(
            "marks granted packets with {:#010x}: a default-drop chain of your own accepts them with `{}`",
            c.grant_mark,
            ruleset::mark_accept_rule(c.grant_mark)
        );
    }
    out!(
        "table inet {TABLE} (sets {SET4}, {SET6}; chain input at priority {PRIORITY}{}{}), created or updated atomically with:",
        if forwarded.is_empty() && routed.is_empty() {
            String::new()
        } else {
            format!(", chain {FORWARD_CHAIN} at priority {FORWARD_PRIORITY}")
        },
        if nat.is_empty() && client_nat.is_empty() {
            String::new()
        } else {
            format!(", chain {NAT_CHAIN} at priority {NAT_PRIORITY}")
        }
    );
    for line in ruleset::render(&TableSpec::from_config(&c)).lines() {
        out!("  {line}");
    }
    out!(
        "firewall reloads: knockerd puts its table back when something else deletes it, but \
         protected ports are open until it does; to keep them closed across `systemctl reload \
         nftables`, add this line to /etc/nftables.conf after `flush ruleset` (knockerd keeps \
         the file it names up to date):\n  {}",
        ruleset::include_line(&c.state_dir)
    );
    match ruleset::nft(&["-j", "list", "ruleset"], None) {
        Ok(json) => {
            let mut warnings =
                ruleset::drop_warnings(&json, c.grant_mark).map_err(|e| e.to_string())?;
            if !c.nat_targets().is_empty() || !client_nat.is_empty() {
                warnings.extend(
                    ruleset::forward_drop_warnings(&json, c.grant_mark)
                        .map_err(|e| e.to_string())?,
                );
            }
            let parsed: serde_json::Value =
                serde_json::from_str(&json).map_err(|e| e.to_string())?;
            let ufw_conf = std::fs::read_to_string(frontends::UFW_CONF).ok();
            for f in frontends::findings(&parsed, c.grant_mark, &protected, ufw_conf.as_deref()) {
                match f {
                    frontends::Finding::Note(n) => out!("{n}"),
                    frontends::Finding::Warning(w) => warnings.push(w),
                }
            }
            if warnings.is_empty() {
                out!("live ruleset: no other chain would drop granted packets");
            }
            for w in warnings
                .into_iter()
                .chain(knockerd::lockout::accept_warnings(&json, &c))
            {
                out!("warning: {w}");
            }
        }
        Err(e) => out!("live ruleset not inspected ({e})"),
    }
    // what would stop the daemon from starting fails the check, so that systemd's
    // ExecStartPre=knockerd check stops a broken start
    let problems = knockerd::lockout::start_problems(&c);
    for p in &problems {
        eprintln!("knockerd: error: {p}");
    }
    match problems.len() {
        0 => Ok(()),
        n => Err(format!(
            "{}: {n} problem(s) above would stop knockerd from starting",
            source.path().display()
        )),
    }
}

/// `check --log-sample FILE`: each line of FILE through the configured source's parser.
fn check_log_sample(c: &config::Config, sample: &std::path::Path) -> Result<(), String> {
    use knockerd::source::{kernel_log, log_file, MAX_LINE_BYTES};
    let bytes = config::read_sample(sample).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes);
    out!("log sample {}:", sample.display());
    let describe = |l: &kernel_log::LogLine<'_>| {
        let k = &l.knock;
        let mut s = format!("knock {} -> {} {}", k.src, k.dst, k.service());
        if k.tcp_flags != knocker_engine::TcpFlags::default() {
            s.push_str(&format!(" flags {}", k.tcp_flags));
        }
        for (name, v) in [
            ("id", l.ip_id.map(u64::from)),
            ("seq", l.seq.map(u64::from)),
            ("ack", l.ack.map(u64::from)),
            ("window", l.window.map(u64::from)),
        ] {
            if let Some(v) = v {
                s.push_str(&format!(" {name}={v}"));
            }
        }
        s
    };
    let mut knocks = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let verdict = match &c.source {
            _ if line.len() > MAX_LINE_BYTES => {
                format!("dropped: longer than {MAX_LINE_BYTES} bytes")
            }
            config::SourceSpec::LogFile { formats, .. } => {
                match log_file::parse_line(formats, line) {
                    Ok((f, l)) => {
                        knocks += 1;
                        format!("{} (format {:?})", describe(&l), formats[f].name)
                    }
                    Err(e) => format!("no knock: {e}"),
                }
            }
            config::SourceSpec::KernelLog { prefix, .. } => {
                let p = kernel_log::Prefixes::new(prefix.as_deref());
                // a sample may be kern.log lines or dmesg's bare messages
                match p.strip_syslog(line).or_else(|| p.strip(line)) {
                    None => "no knock: not a netfilter line with knocker's prefix or yours, after a `kernel:` tag".into(),
                    Some(t) => match kernel_log::parse_netfilter(t) {
                        Ok(l) => {
                            knocks += 1;
                            describe(&l)
                        }
                        Err(e) => format!("no knock: {e}"),
                    },
                }
            }
            config::SourceSpec::Nflog | config::SourceSpec::Packet { .. } => {
                return Err(format!("--log-sample tests a kernel-log or log-file source's lines; this configuration's source is {} ([source] kind = \"{}\"): try `knockerd replay FILE.pcap` for packets", c.source.describe(c.nflog_group), c.source.name()))
            }
        };
        out!("  line {n}: {verdict}");
    }
    out!("  {knocks} knock(s)");
    Ok(())
}

/// Warns about each knock port a local service listens on: knockerd drops its packets.
fn busy_knock_ports(c: &config::Config) {
    let services = knockerd::listening::services();
    for w in c.watched() {
        let busy: Vec<String> = services
            .iter()
            .filter(|s| w.contains(**s))
            .map(|s| s.to_string())
            .collect();
        if busy.is_empty() {
            continue;
        }
        let what = match w {
            config::Watched::Knock(_) => "a knock port".to_string(),
            config::Watched::Range(..) => format!("in the knock port span {w}"),
            config::Watched::Spa(_) => "the port of an SPA door".to_string(),
            config::Watched::Syn(_) => "the port of a stealth SYN door".to_string(),
        };
        out!("warning: a local service listens on {}, {what}: knockerd drops every packet to it, so the service cannot be reached; choose a port no service uses", busy.join(", "));
    }
}

/// The ways past knocker's protection that the admin keeps: trusted sources and the admin's mark.
fn check_way_in(c: &config::Config, protects: bool) {
    if c.trusted.is_empty() {
        if protects {
            out!("trusts no source: everyone must knock (add your management network to [daemon] trusted)");
        }
    } else {
        let nets: Vec<String> = config::Net::minimal(&c.trusted)
            .iter()
            .map(|n| n.to_string())
            .collect();
        out!(
            "trusts (knocker's protection never drops them; sets {} and {}): {}",
            ruleset::TRUSTED4,
            ruleset::TRUSTED6,
            nets.join(", ")
        );
    }
    if !protects {
        return;
    }
    if c.accept_mark == 0 {
        out!(
            "note: {}; to let your own rules admit a source, list it in [daemon] trusted, or set accept_mark (e.g. {:#010x}) and mark its packets before priority {PRIORITY}",
            knockerd::lockout::ACCEPTS_DO_NOT_OVERRIDE,
            config::SUGGESTED_ACCEPT_MARK
        );
        return;
    }
    out!(
        "lets through packets marked {:#010x} (accept_mark): {}, so your own chain marks the sources it admits, before knocker's chain (priority {PRIORITY}): in a prerouting chain as below, or in an input chain at a priority below {PRIORITY} (e.g. -20){}; put your networks in place of 192.0.2.0/24 and 2001:db8::/32:",
        c.accept_mark,
        knockerd::lockout::ACCEPTS_DO_NOT_OVERRIDE,
        if c.forwarded().is_empty() && c.routed().is_empty() {
            String::new()
        } else {
            format!(" (forwarded services are judged in chain {FORWARD_CHAIN} at priority {FORWARD_PRIORITY}: for them, only a prerouting chain at a lower priority, as below, marks in time)")
        }
    );
    for line in knockerd::lockout::admin_mark_script(c.accept_mark).lines() {
        out!("  {line}");
    }
}
