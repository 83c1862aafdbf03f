//! The man pages and shell completions of knockerd and knocker, generated from their clap
//! definitions, so that what `--help` says and what `man` says are the same text.
//!
//! Each binary has a hidden `manuals --out DIR` subcommand that calls [`write`]; the
//! packaged copies live in `packaging/man/` and `packaging/completions/`, and each binary's
//! tests fail when those copies drift from the code.

pub mod reference;

use std::io;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;

/// The commit the binaries were built from (12 hex digits; "unknown" outside a git checkout
/// unless `KNOCKER_COMMIT` was set for the build).
pub const COMMIT: &str = env!("KNOCKER_COMMIT");

/// What `--version` prints after the program's name: `0.1.0 (commit 0123456789ab)`. `-V` and
/// the man pages keep the bare version, so that the packaged pages do not change with every
/// commit.
pub fn long_version(version: &str) -> String {
    format!("{version} (commit {COMMIT})")
}

/// The shells completions are written for, and each file's name for `bin`, as the shells'
/// packaged completion directories expect them (bash-completion's `completions/NAME`, zsh's
/// `_NAME`, fish's `NAME.fish`).
pub fn completion_files(bin: &str) -> [(Shell, String); 3] {
    [
        (Shell::Bash, bin.to_string()),
        (Shell::Zsh, format!("_{bin}")),
        (Shell::Fish, format!("{bin}.fish")),
    ]
}

/// Writes `cmd`'s man pages (section `section`: `bin.SECTION`, and `bin-SUB.SECTION` for each
/// visible subcommand, nested ones included) to `dir/man/`, and its completions to
/// `dir/completions/`. Returns the files written, relative to `dir`, sorted.
pub fn write(cmd: Command, section: &str, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut cmd = cmd;
    cmd.build();
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut written = Vec::new();
    write_pages(&cmd, cmd.get_name(), section, &man, &mut written)?;
    let bin = cmd.get_name().to_string();
    for (shell, file) in completion_files(&bin) {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), bin.clone(), &mut out);
        std::fs::write(completions.join(&file), out)?;
        written.push(Path::new("completions").join(file));
    }
    written.sort();
    Ok(written)
}

/// One page for `cmd` (named `name`), then one per visible subcommand, recursively.
fn write_pages(
    cmd: &Command,
    name: &str,
    section: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    // the bare version: a page that named the commit would change with every commit
    let page = cmd.clone().name(name.to_string()).long_version(None);
    let file = format!("{name}.{section}");
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .section(section)
        .source(format!("knocker {}", cmd.get_version().unwrap_or_default()))
        .manual("knocker")
        .render(&mut out)?;
    std::fs::write(dir.join(&file), out)?;
    written.push(Path::new("man").join(file));
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        write_pages(
            sub,
            &format!("{name}-{}", sub.get_name()),
            section,
            dir,
            written,
        )?;
    }
    Ok(())
}

/// The files of `dir` (recursively), relative to it, sorted: what [`write`] is compared with.
pub fn files_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let path = e.path();
            if e.file_type()?.is_dir() {
                todo.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                out.push(rel.to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether `rel` (a path under packaging/, as [`write`] names them) is one of `bin`'s files.
fn belongs_to(rel: &Path, bin: &str) -> bool {
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match rel.parent().and_then(|p| p.to_str()) {
        Some("man") => {
            name.strip_prefix(bin)
                .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('.'))
                && !name[bin.len()..].trim_start_matches('-').is_empty()
        }
        Some("completions") => completion_files(bin).iter().any(|(_, f)| *f == name),
        _ => false,
    }
}

/// Runs `binary manuals --out` into a scratch directory and compares what it writes with
/// `packaging`'s copies of that binary's files: an error names each file that differs, is
/// missing or is left over, and the command that brings them up to date.
pub fn check_packaged(binary: &Path, packaging: &Path) -> Result<(), String> {
    let bin = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or("no binary name")?;
    let scratch =
        std::env::temp_dir().join(format!("knocker-manuals-{bin}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let out = std::process::Command::new(binary)
        .args(["manuals", "--out"])
        .arg(&scratch)
        .output()
        .map_err(|e| format!("run {}: {e}", binary.display()))?;
    let result = (|| {
        if !out.status.success() {
            return Err(format!(
                "{} manuals failed: {}",
                binary.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let made = files_under(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
        let packaged: Vec<PathBuf> = files_under(packaging)
            .map_err(|e| format!("{}: {e}", packaging.display()))?
            .into_iter()
            .filter(|p| belongs_to(p, &bin))
            .collect();
        let mut wrong = Vec::new();
        for f in &made {
            match std::fs::read(packaging.join(f)) {
                Err(_) => wrong.push(format!("{} is missing", f.display())),
                Ok(old) if old != std::fs::read(scratch.join(f)).unwrap_or_default() => {
                    wrong.push(format!("{} differs", f.display()))
                }
                Ok(_) => {}
            }
        }
        for f in packaged.iter().filter(|f| !made.contains(f)) {
            wrong.push(format!(
                "{} is left over (no such command any more)",
                f.display()
            ));
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "packaging/ does not match {bin}'s command line: {}. Bring it up to date with `cargo run -p {bin} -- manuals --out packaging` (and remove what is left over)",
                wrong.join("; ")
            ))
        }
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_subcommand_gets_a_page_and_every_shell_a_completion() {
        let dir = std::env::temp_dir().join(format!("knocker-manual-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cmd = Command::new("tool")
            .version("1.2.3")
            .long_version("1.2.3 (commit 0123456789ab)")
            .about("does things")
            .subcommand(Command::new("run").about("runs"))
            .subcommand(Command::new("secret").hide(true))
            .subcommand(Command::new("profile").subcommand(Command::new("add")));
        let written = write(cmd, "8", &dir).expect("writes");
        let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "completions/_tool",
                "completions/tool",
                "completions/tool.fish",
                "man/tool-profile-add.8",
                "man/tool-profile.8",
                "man/tool-run.8",
                "man/tool.8",
            ]
        );
        assert_eq!(files_under(&dir).expect("lists"), written);
        let page = std::fs::read_to_string(dir.join("man/tool.8")).expect("page");
        assert!(page.contains(".TH tool 8"), "{page}");
        assert!(page.contains("knocker 1.2.3"), "{page}");
        assert!(!page.contains("commit"), "{page}");
        let bash = std::fs::read_to_string(dir.join("completions/tool")).expect("bash");
        assert!(
            bash.contains("complete") && bash.contains("profile"),
            "{bash}"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn each_binary_owns_only_its_own_files() {
        let p = |s: &str| PathBuf::from(s);
        assert!(belongs_to(&p("man/knockerd.8"), "knockerd"));
        assert!(belongs_to(&p("man/knockerd-check.8"), "knockerd"));
        assert!(!belongs_to(&p("man/knockerd-check.8"), "knocker"));
        assert!(!belongs_to(&p("man/knockerd.8"), "knocker"));
        assert!(belongs_to(&p("man/knocker-profile-add.1"), "knocker"));
        assert!(belongs_to(&p("completions/_knocker"), "knocker"));
        assert!(!belongs_to(&p("completions/_knocker"), "knockerd"));
        assert!(!belongs_to(&p("knockerd.service"), "knockerd"));
    }

    #[test]
    fn the_long_version_names_a_commit() {
        let v = long_version("0.1.0");
        let commit = v
            .strip_prefix("0.1.0 (commit ")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{v}"));
        // built from a git checkout (as here and in CI), the commit is known
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.git");
        if checkout.exists() {
            assert!(
                commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
                "{v}"
            );
        } else {
            assert!(!commit.is_empty(), "{v}");
        }
    }
}
