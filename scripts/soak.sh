#!/usr/bin/env bash
# The soak (SECURITY.md, "Soak"): knockerd with a sequence door, a one-time door, a rotating HOTP
# door and a knocker SPA door, each with a start and a stop command, in network namespaces of its
# own. alice knocks from many addresses until --grants knocks have opened, while the soak kills
# knockerd's parent (then restarts it) or its packet worker with SIGKILL at random points and
# flushes the whole ruleset. Then it checks: no grant was open past its deadline (nftables' own
# notifications, `nft -j list set` samples, probes from alice's addresses), every start command
# got exactly one stop command (duplicates allowed only by the ledger's at-least-once rule, and
# counted), no protected port answered mallory's prober outside a flush's restore window (which it
# measures), and no replayed one-time line, HOTP counter or SPA datagram opened anything. Prints
# its figures and exits non-zero on any violation.
#
#   scripts/soak.sh                  1 000 grants, 12 parent kills, 12 worker kills, 20 flushes
#   scripts/soak.sh --short          60 grants, 2 + 2 kills, 3 flushes (what CI runs)
#   scripts/soak.sh --grants 5000    longer
#   scripts/soak.sh --help           every option
#
# Root only (namespaces, nftables). Installs nftables and iproute2 if missing (Debian). Bounded:
# --grants knocks (100 000 at most), probers at 250 and 125 SYNs a second, --max-secs (900 s;
# 90 s with --short) in all; nothing leaves the namespaces (10.200.0.0/16, fd00:200::/48), which
# are removed on success, failure and Ctrl-C. Not part of `cargo test`; scripts/test.sh runs
# the short version.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-packages.sh
ensure nft:nftables ip:iproute2
cargo build --release --locked -p knockerd -p knocker-bench
exec ./target/release/knocker-flood soak "$@"
