# Sourced by scripts/*.sh: `ensure cmd:package ...` installs the Debian packages whose command is
# missing (as root), so the demo and the tests work on a fresh machine.
ensure() {
  local need=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
  done
  [ "${#need[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${need[*]}: run as root so they can be installed" >&2
    return 1
  fi
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps packages such as knockd from starting their own daemons during the install
  local had_policy=0
  [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  [ "$had_policy" -eq 1 ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  apt-get install -y -qq --no-install-recommends "${need[@]}"
  [ "$had_policy" -eq 1 ] || rm -f /usr/sbin/policy-rc.d
}

# `ensure_python module:package ...`: the same for Python modules, which `command -v` cannot see:
# installs the Debian package of each module that `python3 -c "import MODULE"` cannot import.
ensure_python() {
  local pair missing=()
  for pair in "$@"; do
    python3 -c "import ${pair%%:*}" >/dev/null 2>&1 || missing+=("__no_such_command__:${pair#*:}")
  done
  [ "${#missing[@]}" -eq 0 ] || ensure "${missing[@]}"
}

# `ensure_promtool`: Prometheus' `promtool`, with which the metrics test checks knockerd's file.
# Taken out of Debian's prometheus package into target/tools without installing the package
# (which would bring the Prometheus server and its service); exports KNOCKER_PROMTOOL.
ensure_promtool() {
  if command -v promtool >/dev/null 2>&1; then
    KNOCKER_PROMTOOL=$(command -v promtool)
    export KNOCKER_PROMTOOL
    return 0
  fi
  local dir="$PWD/target/tools/prometheus" tmp
  if [ ! -x "$dir/usr/bin/promtool" ]; then
    tmp=$(mktemp -d)
    chmod 755 "$tmp"
    (cd "$tmp" && apt-get download -qq prometheus) ||
      { apt-get update -qq && (cd "$tmp" && apt-get download -qq prometheus); }
    mkdir -p "$dir"
    dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$dir" ./usr/bin/promtool
    rm -rf "$tmp"
  fi
  KNOCKER_PROMTOOL="$dir/usr/bin/promtool"
  export KNOCKER_PROMTOOL
}
