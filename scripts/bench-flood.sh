#!/usr/bin/env bash
# The flood bench (BENCHMARKS.md, "Flood"): Debian's knockd and knockerd, one after the other, in
# network namespaces of their own, each facing the same spoofed-source SYN flood on its knock
# ports (1 000 IPv4 sources, then 1 000 000 IPv6 sources; 1 000 000 packets each) while alice
# knocks. Prints a markdown table: daemon CPU per million flood packets, peak RSS, and how fast
# alice's knocks opened the door during the flood. Takes about two minutes on 2 cores.
#
# With --spa (BENCHMARKS.md, "SPA flood"): Debian's fwknopd (as it ships, then with a larger
# PCAP_DISPATCH_COUNT) and knockerd with the same access.conf, each facing the same flood of UDP
# datagrams to the SPA port from 10 000 spoofed sources (random base64 garbage, then real fwknop
# packets made with a wrong key; 20 s at 1 000 and at 10 000 datagrams/s) while alice sends
# packets made by Debian's fwknop client. About six minutes. `--daemons ...,knockerd-spa` adds
# knockerd's own SPA door on the same port (alice's packets sealed for it).
#
#   scripts/bench-flood.sh                  the SYN flood bench
#   scripts/bench-flood.sh --quick          100 000 packets, 1 000 and 100 000 sources (seconds)
#   scripts/bench-flood.sh --help           every option of knocker-flood (packets, pps, daemons...)
#   scripts/bench-flood.sh --spa            the SPA flood bench
#   scripts/bench-flood.sh --spa --quick    3 s floods from 1 000 sources (about a minute)
#   scripts/bench-flood.sh --spa --help     every option of the SPA mode (rates, floods, daemons...)
#   scripts/bench-flood.sh --sources        knockerd alone, once per source of knocks (NFLOG, packet
#                                           socket, /dev/kmsg, a kern.log file, a log file with a
#                                           format): BENCHMARKS.md, "Sources under a flood"
#   scripts/bench-flood.sh --sources --quick  the same with 100 000 packets
#
# Root only (namespaces, raw sockets, nftables, iptables). Installs nftables, iproute2 and knockd
# (and for --spa fwknop-server, fwknop-client and iptables) if missing (Debian). Every flood is
# bounded in packets and time and never leaves the namespaces, which are removed on success,
# failure and Ctrl-C. Not part of `cargo test` or scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-packages.sh
if [ "${1:-}" = "--spa" ]; then
  shift
  ensure nft:nftables ip:iproute2 fwknop:fwknop-client fwknopd:fwknop-server iptables:iptables
  cargo build --release --locked -p knockerd -p knocker-bench
  exec ./target/release/knocker-flood spa "$@"
fi
if [ "${1:-}" = "--sources" ]; then
  shift
  ensure nft:nftables ip:iproute2
  cargo build --release --locked -p knockerd -p knocker-bench
  exec ./target/release/knocker-flood --daemons knockerd,knockerd-packet,knockerd-kmsg,knockerd-kern-log,knockerd-log-file "$@"
fi
ensure nft:nftables ip:iproute2 knockd:knockd
cargo build --release --locked -p knockerd -p knocker-bench
exec ./target/release/knocker-flood "$@"
