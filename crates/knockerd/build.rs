//! Links the knockerd binary with packed relative relocations (DT_RELR, glibc 2.36 and later,
//! Debian 12's). A position-independent binary carries a relocation for every pointer in its
//! read-only data (vtables, panic locations, string tables): 18 000 of them, 24 bytes each, which
//! the dynamic loader reads at every start and which then stay mapped in each of knockerd's two
//! processes (about 430 KiB each). DT_RELR encodes them as bitmaps, in a few KiB: the same
//! addresses relocated the same way, the same ASLR. A linker that does not know the option
//! (binutils before 2.38) warns and links as before. BENCHMARKS.md, "Idle memory and wake-ups".

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
