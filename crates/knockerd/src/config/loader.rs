//! The one loader: a [`ConfigFile`] names the file and its format, and [`load`] reads it with
//! that format's module into a [`Loaded`], at start, on every reload and for every subcommand.
//! The daemon, the packet worker and the CLI read configuration only through here; no format
//! module imports this one.

use std::fmt;
use std::path::{Path, PathBuf};

use super::knockd::{self, KnockdOptions};
pub use super::KernelLogChoice;
use super::{fwknop, knockknock, native, Config, ConfigError, DEFAULT_CLIENTS, DEFAULT_SERVER_KEY};

/// Which file, in which format, the daemon runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigFile {
    /// knockerd's TOML ([`native::load`]).
    Native(PathBuf),
    /// A knockd.conf, run as knockd would ([`knockd::load`]).
    Knockd(PathBuf),
    /// fwknopd's access.conf, and optionally its fwknopd.conf ([`fwknop::doors::load`]).
    Fwknop {
        access: PathBuf,
        fwknopd_conf: Option<PathBuf>,
        /// `--fwknop-allow-legacy`: stanzas without an HMAC key run ([`fwknop::Legacy`]).
        allow_legacy: bool,
        /// `--fwknop-nat-targets`: the networks a client's NAT request may name
        /// ([`fwknop::FwknopConf::nat_networks`]).
        nat_networks: Vec<crate::config::Net>,
    },
    /// knockknock's directory (`/etc/knockknock.d`: its `config` and `profiles/`), each profile
    /// run as knockknock runs it ([`knockknock::load`]); knocks seen through NFLOG, or through the
    /// kernel log as knockknock sees them (`--kernel-log`).
    Knockknock {
        dir: PathBuf,
        kernel_log: Option<KernelLogChoice>,
    },
}

impl ConfigFile {
    pub fn path(&self) -> &Path {
        match self {
            ConfigFile::Native(p)
            | ConfigFile::Knockd(p)
            | ConfigFile::Knockknock { dir: p, .. } => p,
            ConfigFile::Fwknop { access, .. } => access,
        }
    }
}

impl fmt::Display for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigFile::Native(p) => write!(f, "{}", p.display()),
            ConfigFile::Knockd(p) => write!(f, "{} (knockd.conf)", p.display()),
            ConfigFile::Fwknop { access, .. } => {
                write!(f, "{} (fwknopd access.conf)", access.display())
            }
            ConfigFile::Knockknock { dir, .. } => {
                write!(f, "{} (knockknock profiles)", dir.display())
            }
        }
    }
}

/// A configuration as loaded, with what its format says besides.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration, before the command line's overrides.
    pub config: Config,
    /// What the format accepts but deserves a look (a knockd.conf's, an access.conf's), each as
    /// `file:line: what`. `check` prints them; the daemon logs them.
    pub warnings: Vec<String>,
    /// A knockd.conf's UseSyslog, LogFile and PidFile; `None` for the other formats.
    pub knockd: Option<KnockdOptions>,
}

/// Reads and validates the configuration `file` names, in its format.
pub fn load(file: &ConfigFile) -> Result<Loaded, ConfigError> {
    match file {
        ConfigFile::Native(path) => Ok(Loaded {
            config: native::load(path)?,
            warnings: Vec::new(),
            knockd: None,
        }),
        ConfigFile::Knockd(path) => {
            let k = knockd::load(path)?;
            Ok(Loaded {
                config: k.config,
                warnings: k.warnings,
                knockd: Some(k.options),
            })
        }
        ConfigFile::Fwknop {
            access,
            fwknopd_conf,
            allow_legacy,
            nat_networks,
        } => {
            let legacy = if *allow_legacy {
                fwknop::Legacy::Allow
            } else {
                fwknop::Legacy::Refuse
            };
            let (config, warnings) =
                fwknop::doors::load(access, fwknopd_conf.as_deref(), legacy, nat_networks)?;
            Ok(Loaded {
                config,
                warnings,
                knockd: None,
            })
        }
        ConfigFile::Knockknock { dir, kernel_log } => {
            let (config, warnings) = knockknock::load(dir, kernel_log.as_ref())?;
            Ok(Loaded {
                config,
                warnings,
                knockd: None,
            })
        }
    }
}

impl Loaded {
    /// What the daemon does with each load besides running it, at start and after each reload:
    /// it logs each warning, and the log registered with [`knockd::log::register_log`] reopens
    /// its file and syslog socket for a knockd.conf's options, as knockd does on SIGHUP.
    pub fn announce(&self) {
        for w in &self.warnings {
            tracing::warn!("{w}");
        }
        if let (Some(options), Some(log)) = (&self.knockd, knockd::log::REGISTERED_LOG.get()) {
            for problem in log.reconfigure(options) {
                tracing::warn!("{problem}");
            }
        }
    }
}

/// The state directory `file` names (`[daemon] state_dir`), read without validating the rest,
/// so that `knockerd reload` still reaches the daemon when the rest of the file is broken (the
/// daemon then says what is wrong). `None` when it names none: a knockd.conf and an
/// access.conf have no such key.
pub fn state_dir(file: &ConfigFile) -> Option<PathBuf> {
    match file {
        ConfigFile::Native(path) => native::state_dir(path),
        ConfigFile::Knockd(_) | ConfigFile::Fwknop { .. } | ConfigFile::Knockknock { .. } => None,
    }
}

/// The server key and the clients file that `file` names, read without validating the rest:
/// `knockerd keygen` runs before the key that validation would need exists. A knockd.conf and
/// an access.conf name neither, so theirs are the defaults.
pub fn key_files(file: &ConfigFile) -> Result<(PathBuf, PathBuf), ConfigError> {
    match file {
        ConfigFile::Native(path) => native::native_paths(path),
        ConfigFile::Knockd(_) | ConfigFile::Fwknop { .. } | ConfigFile::Knockknock { .. } => Ok((
            PathBuf::from(DEFAULT_SERVER_KEY),
            PathBuf::from(DEFAULT_CLIENTS),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestDir;

    fn dir(tag: &str) -> TestDir {
        let d = TestDir::new(tag);
        std::fs::create_dir_all(&d.0).unwrap();
        d
    }

    #[test]
    fn a_native_file_loads_with_no_warnings_and_no_knockd_options() {
        let d = dir("loader-native");
        let path = d.0.join("knockerd.toml");
        std::fs::write(
            &path,
            "[door.ssh]\nsequence = [\"7003\", \"7001:udp\", \"7002\"]\nopen = [\"tcp/22\"]\n",
        )
        .unwrap();
        let l = load(&ConfigFile::Native(path.clone())).expect("loads");
        assert_eq!(l.config.file, path);
        assert_eq!(l.config.doors.len(), 1);
        assert_eq!(l.config.doors[0].spec.name, "ssh");
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(l.knockd, None);
    }

    #[test]
    fn a_knockd_conf_brings_its_options_and_warnings() {
        let d = dir("loader-knockd");
        let path = d.0.join("knockd.conf");
        let pid = d.0.join("knockd.pid");
        // an ascending sequence: knockd runs it, knockerd warns that it can be swept
        std::fs::write(
            &path,
            format!(
                "[options]\n\tInterface = lo\n\tUseSyslog\n\tPidFile = {}\n[open]\n\tsequence = 7000,8000,9000\n\tcommand = /bin/true %IP%\n",
                pid.display()
            ),
        )
        .unwrap();
        let l = load(&ConfigFile::Knockd(path.clone())).expect("loads");
        assert_eq!(l.config.file, path);
        assert_eq!(l.config.doors[0].spec.name, "open");
        let o = l.knockd.expect("knockd.conf options");
        assert!(o.use_syslog);
        assert_eq!(o.pid_file, Some(pid));
        assert_eq!(o.log_file, None);
        assert!(
            l.warnings
                .iter()
                .any(|w| w.starts_with(&format!("{}:", path.display()))),
            "{:?}",
            l.warnings
        );
    }

    #[test]
    fn an_access_conf_brings_the_stanzas_it_refused_as_warnings() {
        let d = dir("loader-fwknop");
        let access = d.0.join("access.conf");
        let keys = "KEY_BASE64 YWJjZGVmZ2hpamtsbW5vcA==\nHMAC_KEY_BASE64 cXJzdHV2d3h5eg==\n";
        // the second stanza has no HMAC key: knockerd refuses it, and says so
        std::fs::write(
            &access,
            format!(
                "SOURCE ANY\nOPEN_PORTS tcp/22\n{keys}\nSOURCE 10.0.0.0/8\nOPEN_PORTS tcp/23\nKEY_BASE64 YWJjZGVmZ2hpamtsbW5vcA==\n"
            ),
        )
        .unwrap();
        let l = load(&ConfigFile::Fwknop {
            access: access.clone(),
            fwknopd_conf: None,
            allow_legacy: false,
            nat_networks: Vec::new(),
        })
        .expect("loads");
        assert_eq!(l.config.file, access);
        assert_eq!(l.config.doors.len(), 1);
        assert_eq!(l.knockd, None);
        assert!(
            l.warnings.iter().any(|w| w.contains("stanza #2")
                && w.contains("refused")
                && w.contains("--fwknop-allow-legacy")),
            "{:?}",
            l.warnings
        );
        // opted in: it runs, loudly
        let l = load(&ConfigFile::Fwknop {
            access: access.clone(),
            fwknopd_conf: None,
            allow_legacy: true,
            nat_networks: Vec::new(),
        })
        .expect("loads");
        assert_eq!(l.config.doors.len(), 2);
        assert!(
            l.warnings
                .iter()
                .any(|w| w.contains("access.conf:8: LEGACY MODE") && w.contains("SECURITY.md")),
            "{:?}",
            l.warnings
        );
    }

    #[test]
    fn a_bad_file_is_an_error_with_its_file_and_line() {
        let d = dir("loader-bad");
        let path = d.0.join("knockerd.toml");
        std::fs::write(&path, "[door.ssh]\nsequence = [\"7001\"]\nnonsense = 1\n").unwrap();
        let e = load(&ConfigFile::Native(path.clone())).expect_err("refused");
        assert_eq!(e.file, path);
        assert!(e.line.is_some(), "{e}");
        let missing = d.0.join("nope.conf");
        let e = load(&ConfigFile::Knockd(missing.clone())).expect_err("no file");
        assert_eq!(e.file, missing);
    }

    #[test]
    fn the_key_files_come_from_the_native_file_even_without_a_door() {
        let d = dir("loader-keys");
        let path = d.0.join("knockerd.toml");
        std::fs::write(
            &path,
            "[daemon]\nserver_key = \"/srv/k/server.key\"\nclients = \"/srv/k/clients.toml\"\n",
        )
        .unwrap();
        assert!(load(&ConfigFile::Native(path.clone())).is_err(), "no door");
        assert_eq!(
            key_files(&ConfigFile::Native(path)).expect("read"),
            (
                PathBuf::from("/srv/k/server.key"),
                PathBuf::from("/srv/k/clients.toml")
            )
        );
        assert_eq!(
            key_files(&ConfigFile::Knockd(d.0.join("knockd.conf"))).expect("defaults"),
            (
                PathBuf::from(DEFAULT_SERVER_KEY),
                PathBuf::from(DEFAULT_CLIENTS)
            )
        );
    }
}
