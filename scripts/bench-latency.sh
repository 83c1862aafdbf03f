#!/usr/bin/env bash
# The latency bench (BENCHMARKS.md, "Knock-to-open latency"): knockerd with a sequence door, a
# knocker SPA door and a stealth SYN door, in network namespaces of its own, on an idle server;
# alice knocks on each in turn and each knock is timed from just before her last packet leaves to
# the kernel's own notification that her grant is in the nftables set (NFT_MSG_NEWSETELEM, read
# from a netlink socket inside the server's namespace). Prints a markdown table per kind of door:
# samples, min, median, p99, max. 200 samples each take a few seconds once built.
#
#   scripts/bench-latency.sh                    200 samples per door
#   scripts/bench-latency.sh --samples 1000     more samples
#   scripts/bench-latency.sh --doors spa,syn    some doors only
#   scripts/bench-latency.sh --help             every option
#
# Root only (namespaces, raw sockets, nftables). Installs nftables and iproute2 if missing
# (Debian). Bounded: at most --samples knocks per door (10 000), 2 s each, --max-secs (90 s) in
# all; nothing leaves the namespaces (10.200.0.0/16), which are removed on success, failure and
# Ctrl-C. Not part of `cargo test` or scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-packages.sh
ensure nft:nftables ip:iproute2
cargo build --release --locked -p knockerd -p knocker-bench
exec ./target/release/knocker-flood latency "$@"
