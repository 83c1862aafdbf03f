#!/usr/bin/env bash
# The idle bench (BENCHMARKS.md, "Idle memory and wake-ups"): knockerd (the build that ships, Cargo.toml's dist profile) with the example
# configuration (examples/knockerd.toml, its [door.ssh] uncommented), Debian's knockd with the same
# door and Debian's fwknopd with one access.conf stanza, one after the other, each in network
# namespaces of its own on an idle server. For each: ready, 5 s to settle, then a 30 s window with
# no packet. Prints one markdown table: VmRSS of every process, their sum, Pss (shared pages
# split), the distinct physical pages they map together (/proc/PID/pagemap), RssAnon, RssFile,
# threads, and the wake-ups (context switches of every thread) during the window. About two
# minutes.
#
#   scripts/bench-idle.sh                      all three daemons
#   scripts/bench-idle.sh --daemons knockerd   knockerd alone
#   scripts/bench-idle.sh --runs 3             three runs of each, one row per run
#   scripts/bench-idle.sh --help               every option
#
# Root only (namespaces, nftables, iptables, pagemap). Installs nftables, iproute2, knockd,
# fwknop-server and iptables if missing (Debian). Nothing is sent; the namespaces are removed on
# success, failure and Ctrl-C. Not part of `cargo test` or scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-packages.sh
ensure nft:nftables ip:iproute2 knockd:knockd fwknopd:fwknop-server iptables:iptables
cargo build --release --locked -p knocker-bench
# the knockerd that ships (Cargo.toml's dist profile), unless --knockerd names another
cargo build --profile dist --locked -p knockerd
for arg in "$@"; do
  case "$arg" in --knockerd | --knockerd=*) exec ./target/release/knocker-flood idle "$@" ;; esac
done
exec ./target/release/knocker-flood idle --knockerd target/dist/knockerd "$@"
