//! Where the configuration comes from: a [`ConfigFile`] names the file and its format, and
//! [`load_source`] reads it with that format's module, at start and on every reload. The daemon
//! and the CLI load through here; no format module imports this one.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{knockd, Config, ConfigError};

/// Which file, in which format, the daemon runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigFile {
    /// knockerd's TOML ([`config::load`](super::load())).
    Native(PathBuf),
    /// A knockd.conf, run as knockd would ([`knockd::load`]).
    Knockd(PathBuf),
    /// fwknopd's access.conf, and optionally its fwknopd.conf (`crate::fwknop_doors`).
    Fwknop {
        access: PathBuf,
        fwknopd_conf: Option<PathBuf>,
    },
}

impl ConfigFile {
    pub fn path(&self) -> &Path {
        match self {
            ConfigFile::Native(p) | ConfigFile::Knockd(p) => p,
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
        }
    }
}

/// Loads the configuration the daemon runs, at start and on every reload. For a knockd.conf,
/// each warning is logged (so the daemon logs them at start and after each reload), and the log
/// registered with [`knockd::log::register_log`] reopens its file and syslog socket as knockd
/// does on SIGHUP.
pub fn load_source(source: &ConfigFile) -> Result<Config, ConfigError> {
    match source {
        ConfigFile::Native(path) => super::load(path),
        ConfigFile::Knockd(path) => {
            let k = knockd::load(path)?;
            for w in &k.warnings {
                tracing::warn!("{w}");
            }
            if let Some(log) = knockd::log::REGISTERED_LOG.get() {
                for problem in log.reconfigure(&k.options) {
                    tracing::warn!("{problem}");
                }
            }
            Ok(k.config)
        }
        ConfigFile::Fwknop {
            access,
            fwknopd_conf,
        } => {
            let (config, warnings) = super::fwknop::doors::load(access, fwknopd_conf.as_deref())?;
            for w in &warnings {
                tracing::warn!("{w}");
            }
            Ok(config)
        }
    }
}
