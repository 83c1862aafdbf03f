#!/usr/bin/env bash
# The self-contained demo: builds knockerd, then runs `knockerd demo` (three network namespaces,
# the real daemon, real packets). Installs nftables and iproute2 if missing (Debian, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-packages.sh
ensure nft:nftables ip:iproute2
cargo build --release --locked -p knockerd
exec ./target/release/knockerd demo "$@"
