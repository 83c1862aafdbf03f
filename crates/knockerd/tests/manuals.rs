//! knockerd's man pages and completions in packaging/ are the ones its command line makes
//! (`knockerd manuals --out packaging`): a change to an option that is not carried there fails.

#[test]
fn the_packaged_man_pages_and_completions_match_the_command_line() {
    let packaging = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging");
    if let Err(e) =
        knocker_manual::check_packaged(env!("CARGO_BIN_EXE_knockerd").as_ref(), &packaging)
    {
        panic!("{e}");
    }
}
