#!/usr/bin/env bash
# Runs every test of knocker: formatting, lints, unit and property tests, the end-to-end tests in
# network namespaces (real knockerd, real nftables, Debian's knock client, nmap), and a smoke run
# of the benchmarks. Installs the system packages it needs (Debian, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-packages.sh
ensure nft:nftables ip:iproute2 knock:knockd nmap:nmap

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# the benchmarks must build and run (one quick iteration each); real figures: BENCHMARKS.md
cargo bench --workspace --locked -- --test
