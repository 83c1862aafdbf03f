//! What the command line sets over the configuration, and the one load both processes do: the
//! root parent at start and at every reload, the packet worker when it starts. Both read the same
//! files with the same overrides, so they judge by the same doors.

use crate::config::Config;

/// What the command line sets over the configuration file, at start and at every reload.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--state-dir`: where the ledger lives (a knockd.conf has no key for it).
    pub state_dir: Option<std::path::PathBuf>,
    /// `-v`s, passed on to the packet worker.
    pub verbose: u8,
    /// `--worker-user`: the user the packet worker runs as, over the configuration's
    /// `worker_user` (default `nobody`).
    pub worker_user: Option<String>,
    /// `--trusted`: sources the protection never drops, added to the configuration's `trusted` (the only way
    /// to trust a source under --knockd-conf or --fwknop-access, whose formats have no key for it).
    pub trusted: Vec<crate::config::Net>,
    /// `--metrics-file`: where the metrics are written too, over `[daemon] metrics_file`.
    pub metrics_file: Option<std::path::PathBuf>,
    /// `--dry-run`: the daemon decides but does not act (see `crate::dryrun`).
    pub dry_run: bool,
}

impl Overrides {
    /// Applies the command line over a loaded configuration.
    pub fn apply(&self, config: &mut Config) {
        if let Some(dir) = &self.state_dir {
            config.state_dir = dir.clone();
        }
        if let Some(user) = &self.worker_user {
            config.worker_user = Some(user.clone());
        }
        config.trusted.extend(self.trusted.iter().copied());
        if let Some(file) = &self.metrics_file {
            config.metrics_file = Some(file.clone());
        }
    }
}

/// Loads the configuration with [`crate::config::loader`], logs what it warns about, and
/// applies the command line's overrides.
pub fn load(
    config_source: &crate::config::loader::ConfigFile,
    overrides: &Overrides,
) -> Result<Config, crate::config::ConfigError> {
    let loaded = crate::config::loader::load(config_source)?;
    loaded.announce();
    let mut config = loaded.config;
    overrides.apply(&mut config);
    Ok(config)
}
