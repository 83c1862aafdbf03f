#!/usr/bin/env bash
# The latency bench (BENCHMARKS.md, "Knock-to-open latency"): knockerd with a sequence door, a
# knocker SPA door and a stealth SYN door, then knockerd's fwknop door, then Debian's knockd (the
# same sequence) and fwknopd (the same access.conf), each in network namespaces of its own, on
# an idle server; alice knocks and each knock is timed from just before her last packet leaves to
# the kernel's own notification that her grant is in the nftables set (NFT_MSG_NEWSETELEM, read
# from a netlink socket inside the server's namespace; fwknopd, whose backend is iptables: its
# "Added access rule" line). Prints one markdown table: samples, min, median, p99, max, the ratio
# of medians against knockerd, and the load average before and after.
#
#   scripts/bench-latency.sh                          200 samples per knockerd door, 100 for knockd/fwknopd
#   scripts/bench-latency.sh --samples 1000           the figures in BENCHMARKS.md (about 1 minute)
#   scripts/bench-latency.sh --incumbents none        knockerd alone
#   scripts/bench-latency.sh --doors spa,syn          some doors only
#   scripts/bench-latency.sh --samples-out FILE       every sample, on CLOCK_MONOTONIC (for a trace)
#   scripts/bench-latency.sh --shared-state           and the same doors again with a fleet's store
#                                                     (redis-server in a namespace of its own)
#   scripts/bench-latency.sh --help                   every option
#
# Root only (namespaces, raw sockets, nftables, iptables). Installs nftables, iproute2, knockd,
# fwknop-server, fwknop-client, iptables and redis-server if missing (Debian). Bounded: at most --samples knocks
# per knockerd door (10 000), --incumbent-samples (150) per incumbent, 2 s each, --max-secs (90 s)
# per daemon; nothing leaves the namespaces (10.200.0.0/16), which are removed on success,
# failure and Ctrl-C. Not part of `cargo test` or scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-packages.sh
ensure nft:nftables ip:iproute2 knockd:knockd fwknopd:fwknop-server fwknop:fwknop-client iptables:iptables redis-server:redis-server
cargo build --release --locked -p knockerd -p knocker-bench
exec ./target/release/knocker-flood latency "$@"
