//! knockerd's man pages and completions in packaging/ are the ones its command line makes
//! (`knockerd manuals --out packaging --docs docs`), and so are knockerd.toml(5) and
//! docs/knockerd.toml.md: a change to an option or a configuration key not carried there fails.

#[test]
fn the_packaged_man_pages_and_completions_match_the_command_line() {
    let packaging = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging");
    if let Err(e) =
        knocker_manual::check_packaged(env!("CARGO_BIN_EXE_knockerd").as_ref(), &packaging)
    {
        panic!("{e}");
    }
}

#[test]
fn the_configuration_reference_in_the_docs_is_the_one_in_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/knockerd.toml.md");
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    let made = knockerd::config::native::reference::KNOCKERD_TOML.markdown();
    assert!(
        written == made,
        "docs/knockerd.toml.md does not match the reference in crates/knockerd/src/config/native/reference.rs: bring it up to date with `cargo run -p knockerd -- manuals --out packaging --docs docs`"
    );
}
