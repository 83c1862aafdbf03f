//! `[daemon] shared_state` and its keys, and doors' `shared_state_down`: a fleet's shared
//! replay memory ([`crate::fleet`]).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use toml::Spanned;
use zeroize::Zeroizing;

use crate::config::{ConfigError, Ctx, Door};
use crate::fleet::{DownPolicy, SharedState};

/// The `[daemon]` keys of a shared store, as written.
pub(super) struct RawShared<'a> {
    pub url: Option<&'a Spanned<String>>,
    pub password_file: Option<&'a Spanned<String>>,
    pub ca_file: Option<&'a Spanned<String>>,
    pub down: Option<&'a Spanned<String>>,
}

fn policy(cx: &Ctx<'_>, v: &Spanned<String>, key: &str) -> Result<DownPolicy, ConfigError> {
    DownPolicy::parse(v.get_ref()).map_or_else(
        || {
            cx.err(
                v.span(),
                format!(
                    "{key} must be \"refuse\" (refuse what needs the fleet's once-only claim while the store is down) or \"local\" (this host's own replay memory alone); got {:?}",
                    v.get_ref()
                ),
            )
        },
        Ok,
    )
}

/// A file named by an absolute path, read whole (`what` for messages).
fn read_file(
    cx: &Ctx<'_>,
    v: &Spanned<String>,
    key: &str,
) -> Result<(PathBuf, Vec<u8>), ConfigError> {
    let path = PathBuf::from(v.get_ref());
    if !path.is_absolute() {
        return cx.err(
            v.span(),
            format!("{key} must be an absolute path, e.g. \"/etc/knocker/redis.pass\""),
        );
    }
    match std::fs::read(&path) {
        Ok(bytes) => Ok((path, bytes)),
        Err(e) => cx.err(
            v.span(),
            format!("{key}: cannot read {}: {e}", path.display()),
        ),
    }
}

/// The shared store of `[daemon]`, with each door's policy; `None` without `shared_state`.
/// `doors` pairs each built door with its own `shared_state_down`, if written.
pub(super) fn shared_state(
    cx: &Ctx<'_>,
    raw: RawShared<'_>,
    doors: &[(&Door, Option<&Spanned<String>>)],
) -> Result<Option<SharedState>, ConfigError> {
    let Some(url) = raw.url else {
        let stray = [raw.password_file, raw.ca_file, raw.down]
            .into_iter()
            .flatten()
            .chain(doors.iter().filter_map(|(_, p)| *p))
            .next();
        if let Some(s) = stray {
            return cx.err(
                s.span(),
                "this key is for a fleet's shared store: set [daemon] shared_state = \"redis://USER@HOST:6379/\" too, or remove it",
            );
        }
        return Ok(None);
    };
    let mut shared =
        SharedState::parse_url(url.get_ref()).or_else(|e| cx.err(url.span(), e.to_string()))?;
    if let Some(p) = raw.password_file {
        if shared.has_password() {
            return cx.err(
                p.span(),
                "shared_state's URL has a password already: remove it from the URL (keep the user) or remove shared_state_password_file",
            );
        }
        let (path, bytes) = read_file(cx, p, "shared_state_password_file")?;
        let bytes = Zeroizing::new(bytes);
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        if mode & 0o077 != 0 {
            return cx.err(
                p.span(),
                format!("shared_state_password_file {} can be read by others (mode {mode:o}): chmod 600 it", path.display()),
            );
        }
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => Zeroizing::new(t.to_string()),
            Err(_) => {
                return cx.err(
                    p.span(),
                    format!(
                        "shared_state_password_file {}: not UTF-8 text",
                        path.display()
                    ),
                )
            }
        };
        if text.trim_end_matches(['\n', '\r']).contains(['\n', '\r']) || text.trim().is_empty() {
            return cx.err(
                p.span(),
                format!(
                    "shared_state_password_file {} must hold the password alone, on one line",
                    path.display()
                ),
            );
        }
        shared.set_password_file(path, text);
    }
    if let Some(c) = raw.ca_file {
        if !shared.tls {
            return cx.err(
                c.span(),
                "shared_state_ca_file is for a TLS store: write shared_state = \"rediss://...\", or remove it",
            );
        }
        let (path, pem) = read_file(cx, c, "shared_state_ca_file")?;
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return cx.err(
                c.span(),
                format!("shared_state_ca_file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display()),
            );
        }
        shared.ca_file = Some(path);
        shared.ca_pem = Some(pem);
    }
    if let Some(d) = raw.down {
        shared.down = policy(cx, d, "shared_state_down")?;
    }
    let mut own = BTreeMap::new();
    for (door, p) in doors {
        let Some(p) = p else { continue };
        if door.replayable() {
            return cx.err(
                p.span(),
                format!(
                    "door {:?} is a static sequence: it makes no once-only claim to share (anyone who records it can replay it, on every host); remove shared_state_down, or make it a one-time, rotating or SPA door",
                    door.spec.name
                ),
            );
        }
        own.insert(door.spec.name.clone(), policy(cx, p, "shared_state_down")?);
    }
    shared.doors = own;
    Ok(Some(shared))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use crate::config::native::parse;
    use crate::fleet::{DownPolicy, PasswordFrom};

    struct Files(crate::TestDir);

    impl Files {
        fn new() -> Files {
            let d = crate::TestDir::new("shared");
            std::fs::create_dir_all(&d.0).expect("dir");
            Files(d)
        }

        fn write(&self, name: &str, text: &str, mode: u32) -> String {
            let p = self.0 .0.join(name);
            std::fs::write(&p, text).expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
            p.display().to_string()
        }

        /// A rotating door `v` (it makes claims) and a static door `s` (it makes none).
        fn config(&self, daemon: &str, v: &str, s: &str) -> String {
            let key = self.write("k", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", 0o600);
            format!(
                "[daemon]\n{daemon}\n[door.v]\nkind = \"rotating\"\nkey_file = {key:?}\nports = \"40000-40999\"\nopen = [\"22\"]\n{v}\n[door.s]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"23\"]\n{s}\n"
            )
        }
    }

    fn p(text: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        parse(Path::new("k.toml"), text)
    }

    fn err_of(text: &str) -> String {
        p(text).expect_err("must be refused").to_string()
    }

    #[test]
    fn a_store_with_policies_per_door() {
        let f = Files::new();
        let c = p(&f.config(
            "shared_state = \"redis://knocker:pw@10.0.0.5:6379/\"\nshared_state_down = \"local\"",
            "shared_state_down = \"refuse\"",
            "",
        ))
        .expect("valid");
        let s = c.shared_state.expect("configured");
        assert_eq!(s.to_string(), "redis://knocker:***@10.0.0.5:6379/0");
        assert_eq!(s.policy("v"), DownPolicy::Refuse);
        assert_eq!(s.policy("s"), DownPolicy::Local);
        assert!(p(&f.config("", "", ""))
            .expect("valid")
            .shared_state
            .is_none());
        // the default is to refuse
        let c = p(&f.config("shared_state = \"redis://h/\"", "", "")).expect("valid");
        assert_eq!(c.shared_state.expect("on").policy("v"), DownPolicy::Refuse);
    }

    #[test]
    fn the_password_may_come_from_a_private_file_only() {
        let f = Files::new();
        let pw = f.write("pw", "hunter2\n", 0o600);
        let c = p(&f.config(
            &format!("shared_state = \"redis://knocker@h/\"\nshared_state_password_file = {pw:?}"),
            "",
            "",
        ))
        .expect("valid");
        let s = c.shared_state.expect("on");
        assert_eq!(s.password_from, PasswordFrom::File(pw.clone().into()));
        assert!(!format!("{s} {s:?}").contains("hunter2"));

        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = err_of(&f.config(
            &format!("shared_state = \"redis://knocker@h/\"\nshared_state_password_file = {pw:?}"),
            "",
            "",
        ));
        assert!(
            e.starts_with("k.toml:3: shared_state_password_file") && e.contains("chmod 600"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");

        let e = err_of(&f.config(
            &format!(
                "shared_state = \"redis://knocker:pw@h/\"\nshared_state_password_file = {pw:?}"
            ),
            "",
            "",
        ));
        assert!(
            e.starts_with("k.toml:3:") && e.contains("has a password already"),
            "{e}"
        );
    }

    #[test]
    fn mistakes_are_refused_with_their_line_and_the_fix() {
        let f = Files::new();
        let e = err_of(&f.config("shared_state = \"http://u:hunter2@h/\"", "", ""));
        assert!(
            e.starts_with("k.toml:2: shared_state must start with redis://"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        let e = err_of(&f.config("shared_state_down = \"local\"", "", ""));
        assert!(
            e.starts_with("k.toml:2:") && e.contains("set [daemon] shared_state"),
            "{e}"
        );
        let e = err_of(&f.config("", "shared_state_down = \"local\"", ""));
        assert!(e.contains("set [daemon] shared_state"), "{e}");
        let e = err_of(&f.config(
            "shared_state = \"redis://h/\"",
            "",
            "shared_state_down = \"local\"",
        ));
        assert!(
            e.contains("door \"s\" is a static sequence") && e.contains("no once-only claim"),
            "{e}"
        );
        let e = err_of(&f.config(
            "shared_state = \"redis://h/\"",
            "shared_state_down = \"open\"",
            "",
        ));
        assert!(
            e.contains("must be \"refuse\"") && e.contains("\"local\""),
            "{e}"
        );
        let e = err_of(&f.config(
            "shared_state = \"redis://h/\"\nshared_state_ca_file = \"/etc/ssl/certs/ca-certificates.crt\"",
            "",
            "",
        ));
        assert!(e.starts_with("k.toml:3:") && e.contains("rediss://"), "{e}");
        let pem = f.write("ca.pem", "not a certificate\n", 0o644);
        let e = err_of(&f.config(
            &format!("shared_state = \"rediss://h/\"\nshared_state_ca_file = {pem:?}"),
            "",
            "",
        ));
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }
}
