//! Debian's fwknopd as the tests and the benches run it: in the foreground (`-f`, its log on
//! stderr), on the caller's fwknopd.conf and access.conf, with the files it would keep under
//! /var (digest cache, pid file, run directory) in a directory of the caller's.

use std::ffi::OsString;
use std::path::Path;

/// fwknopd's arguments for `conf` and `access`, its own files in `state` (made, with its run
/// directory, if missing). Add the capture (`-i IFACE`, or `--pcap-file FILE`) and any other
/// option after them.
pub fn args(conf: &Path, access: &Path, state: &Path) -> Result<Vec<OsString>, String> {
    let run = state.join("run");
    std::fs::create_dir_all(&run).map_err(|e| format!("{}: {e}", run.display()))?;
    Ok(vec![
        "-f".into(),
        "-c".into(),
        conf.into(),
        "-a".into(),
        access.into(),
        "-d".into(),
        state.join("digest.cache").into(),
        "-p".into(),
        state.join("fwknopd.pid").into(),
        "-r".into(),
        run.into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_files_go_to_the_state_directory_which_is_made() {
        let dir = crate::TempDir::new("fwknopd-args");
        let state = dir.join("state");
        let a = args(Path::new("/c"), Path::new("/a"), &state).expect("args");
        let run = state.join("run");
        let want: Vec<OsString> = vec![
            "-f".into(),
            "-c".into(),
            "/c".into(),
            "-a".into(),
            "/a".into(),
            "-d".into(),
            state.join("digest.cache").into(),
            "-p".into(),
            state.join("fwknopd.pid").into(),
            "-r".into(),
            run.clone().into(),
        ];
        assert_eq!(a, want);
        assert!(run.is_dir());
    }
}
