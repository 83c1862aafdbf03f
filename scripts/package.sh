#!/usr/bin/env bash
# Builds the Debian packages: target/debian/knockerd_VERSION-1_ARCH.deb (the daemon, its unit,
# the example configuration, man pages, completions, the fail2ban filter and the docs) and
# knocker_VERSION-1_ARCH.deb (the client). Installs cargo-deb first when it is missing.
#   sudo apt install ./target/debian/knockerd_*.deb ./target/debian/knocker_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --locked
cargo build --profile dist --locked -p knockerd -p knocker
for package in knockerd knocker; do
	# the dist profile (Cargo.toml) keeps line tables, as release does: packages are stripped
	cargo deb --no-build --profile dist --strip --locked -p "$package"
done
ls -1 target/debian/*.deb
