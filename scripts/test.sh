#!/usr/bin/env bash
# Runs every test of knocker: formatting, lints, a smoke run of the benchmarks, unit and property
# tests, and the end-to-end tests in network namespaces (real knockerd, real nftables, Debian's
# knock client, nmap). Installs the system packages it needs (Debian, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-packages.sh
had_firewalld=$(command -v firewalld || true)
ensure nft:nftables ip:iproute2 knock:knockd nmap:nmap fwknop:fwknop-client fwknopd:fwknop-server iptables:iptables sshd:openssh-server ssh:openssh-client systemd-analyze:systemd unshare:util-linux setpriv:util-linux script:bsdutils fail2ban-regex:fail2ban tcpdump:tcpdump python3:python3 curl:curl ping:iputils-ping capsh:libcap2-bin lintian:lintian dpkg-shlibdeps:dpkg-dev man:man-db ufw:ufw firewalld:firewalld dbus-daemon:dbus redis-server:redis-server openssl:openssl
ensure_python cryptography:python3-cryptography
ensure_promtool
# firewalld's package enables its unit, which at the next boot of a systemd host would take over
# that host's firewall; the tests run their own firewalld in a namespace (tests/frontends_e2e.rs)
if [ -z "$had_firewalld" ] && command -v systemctl >/dev/null; then
  systemctl disable firewalld >/dev/null 2>&1 || true
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# every fuzz target still compiles against today's parsers (running them: fuzz/README.md)
cargo check --manifest-path fuzz/Cargo.toml --locked --bins
# the benchmarks must build and run (one quick iteration each); real figures: BENCHMARKS.md
# (`--bench '*'`: the bench targets alone; `--benches` would run the libraries' unit tests again)
cargo bench --workspace --bench '*' --locked -- --test

# the build that ships (Cargo.toml's dist profile), which the Debian packages' test
# (crates/knockerd/tests/deb_package.rs) packs
cargo build --profile dist --locked -p knockerd -p knocker

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked 2>&1 | tee "$log" || status=1
# the soak's short version (SECURITY.md, "Soak"): SIGKILLs and ruleset flushes, from the debug build
[ "${KNOCKER_SKIP_E2E:-}" = 1 ] || { cargo build --locked -p knockerd -p knocker-bench && ./target/debug/knocker-flood soak --short; } || status=1
# the last line sums every test binary's result
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "total: %d passed, %d failed, %d skipped\n", p, f, s; exit (p == 0 || f > 0) }' "$log" || status=1
exit "$status"
