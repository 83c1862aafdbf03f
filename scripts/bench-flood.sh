#!/usr/bin/env bash
# The flood bench (BENCHMARKS.md, "Flood"): Debian's knockd and knockerd, one after the other, in
# network namespaces of their own, each facing the same spoofed-source SYN flood on its knock
# ports (1 000 IPv4 sources, then 1 000 000 IPv6 sources; 1 000 000 packets each) while alice
# knocks. Prints a markdown table: daemon CPU per million flood packets, peak RSS, and how fast
# alice's knocks opened the door during the flood. Takes about two minutes on 2 cores.
#
#   scripts/bench-flood.sh            the full bench
#   scripts/bench-flood.sh --quick    100 000 packets, 1 000 and 100 000 sources (seconds)
#   scripts/bench-flood.sh --help     every option of knocker-flood (packets, pps, daemons...)
#
# Root only (namespaces, raw sockets, nftables). Installs nftables, iproute2 and knockd if
# missing (Debian). Every flood is bounded in packets and time and never leaves the namespaces,
# which are removed on success, failure and Ctrl-C. Not part of `cargo test` or scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-packages.sh
ensure nft:nftables ip:iproute2 knockd:knockd
cargo build --release --locked -p knockerd -p knocker-bench
exec ./target/release/knocker-flood "$@"
