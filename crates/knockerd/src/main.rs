//! knockerd: the knock daemon. Binds no port; sees knocks through the firewall's NFLOG and grants
//! access through nftables set elements that the kernel expires by itself.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use knockerd::config::{self, fmt_duration, DEFAULT_CONFIG, TABLE};
use knockerd::ruleset::{self, TableSpec, PRIORITY, SET4, SET6};

#[derive(Parser)]
#[command(
    name = "knockerd",
    version,
    about = "Port-knocking daemon: opens a service to one address, for a short time, to whoever knocks right",
    long_about = "knockerd keeps services closed and silent, and opens one service to one source address for \
a short time when that address knocks the secret sequence. It binds no port: knock packets are dropped \
and logged by knockerd's own nftables table (inet knocker) and read from NFLOG. Grants are nftables set \
elements with a timeout, so the kernel closes them on time even if knockerd dies.\n\n\
Without a subcommand, knockerd runs in the foreground (for systemd) and logs one line per event to stderr. \
SIGTERM/SIGINT stop it (exit 0); SIGHUP reloads the configuration (a bad one is refused and the running one kept).",
    after_help = "Examples:\n  knockerd check                      validate /etc/knocker/knockerd.toml and show what it does\n  knockerd --config ./k.toml -v       run in the foreground with detail\n  knockerd status                     list open grants\n  knockerd teardown                   remove knocker's nftables table\n  knockerd demo                       self-contained demo in network namespaces (root)"
)]
struct Cli {
    /// Configuration file (TOML)
    #[arg(short, long, global = true, default_value = DEFAULT_CONFIG, value_name = "FILE")]
    config: PathBuf,
    /// More detail in the log: -v shows each knock's progress, -vv every packet seen
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon in the foreground (the default)
    Run,
    /// Validate the configuration and print what the daemon will do; warn about other firewall
    /// chains that would drop granted packets anyway
    Check,
    /// List the grants open right now (from the kernel's sets)
    Status,
    /// Remove knocker's nftables table. Open grants end, and knock and protected ports are no
    /// longer dropped by knocker: whatever else the firewall says applies
    Teardown,
    /// Run the self-contained demo: three network namespaces, real knockerd, real packets (root)
    Demo {
        /// Seconds the demo door stays open
        #[arg(long, default_value_t = 4)]
        open_for: u64,
    },
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KNOCKERD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("knockerd={level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // Under systemd the journal adds its own timestamps.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command.unwrap_or(Cmd::Run) {
        Cmd::Run => knockerd::daemon::run(&cli.config),
        Cmd::Check => check(&cli.config),
        Cmd::Status => status(),
        Cmd::Teardown => match ruleset::teardown() {
            Ok(true) => {
                println!("removed table inet {TABLE}");
                Ok(())
            }
            Ok(false) => {
                println!("no table inet {TABLE}: nothing to remove");
                Ok(())
            }
            Err(e) => Err(e),
        },
        Cmd::Demo { open_for } => knockerd::demo::run(open_for).map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("knockerd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn list(services: &[knocker_engine::Service]) -> String {
    services
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check(path: &std::path::Path) -> Result<(), String> {
    let c = config::load(path).map_err(|e| e.to_string())?;
    println!("{}: OK", path.display());
    for d in &c.doors {
        println!("door {} (line {}):", d.spec.name, d.line);
        println!(
            "  knock {} within {}{}",
            d.describe_knocks(),
            fmt_duration(d.spec.window),
            d.spec
                .tcp_flags
                .map(|f| format!(", tcp flags {f}"))
                .unwrap_or_default()
        );
        println!(
            "  opens {} to the knocking address for {}",
            if d.spec.open.is_empty() { "nothing in the firewall (it runs its commands)".to_string() } else { list(&d.spec.open) },
            fmt_duration(d.spec.open_for)
        );
        if let Some(cmd) = &d.start_command {
            println!("  runs {cmd} on opening");
        }
        if let Some(cmd) = &d.stop_command {
            println!("  runs {cmd} {} after opening", fmt_duration(d.stop_after));
        }
        if d.one_time.is_none() {
            println!("  warning: a static sequence can be replayed by anyone who records it");
        }
    }
    println!(
        "watches (dropped silently, logged to NFLOG group {}): {}",
        c.nflog_group,
        list(&c.knock_services())
    );
    let protected = c.protected();
    if protected.is_empty() {
        println!("protects nothing: the opened services must be closed by your own firewall");
    } else {
        println!(
            "protects (dropped for everyone without a grant): {}",
            list(&protected)
        );
    }
    println!(
        "keeps at most {} partial knocks in memory; on a clean stop, open grants are {}",
        c.max_tracked,
        match c.on_stop {
            config::OnStop::Keep => "kept until they time out",
            config::OnStop::Withdraw => "withdrawn",
        }
    );
    if c.grant_mark != 0 {
        println!(
            "marks granted packets with {:#010x}: a default-drop chain of your own accepts them with `{}`",
            c.grant_mark,
            ruleset::mark_accept_rule(c.grant_mark)
        );
    }
    println!(
        "table inet {TABLE} (sets {SET4}, {SET6}; chain input at priority {PRIORITY}), created or updated atomically with:"
    );
    for line in ruleset::render(&TableSpec::from_config(&c)).lines() {
        println!("  {line}");
    }
    match ruleset::nft(&["-j", "list", "ruleset"], None) {
        Ok(json) => {
            let warnings = ruleset::drop_warnings(&json, c.grant_mark)?;
            if warnings.is_empty() {
                println!("live ruleset: no other chain would drop granted packets");
            }
            for w in warnings {
                println!("warning: {w}");
            }
        }
        Err(e) => println!("live ruleset not inspected ({e})"),
    }
    Ok(())
}

fn status() -> Result<(), String> {
    if !ruleset::table_exists()? {
        println!("no table inet {TABLE}: knockerd has not run here, or it was torn down");
        return Ok(());
    }
    let grants = ruleset::live_grants()?;
    if grants.is_empty() {
        println!("no open grants");
    }
    for g in grants {
        println!(
            "{} {} expires in {}s (of {}s)",
            g.to, g.service, g.expires_s, g.timeout_s
        );
    }
    Ok(())
}
