#!/usr/bin/env bash
# The system tools a make target needs, checked first and, as root, installed or fetched.
#
#   scripts/system-deps.sh make    make itself (.ci/run calls this when make is missing)
#   scripts/system-deps.sh venv    python3 -m venv (Debian's python3-venv)
#   scripts/system-deps.sh test    everything the test suite starts or drives (make test)
#   scripts/system-deps.sh bench   what the benchmarks start (make bench, make bench-quick)
#
# As root, whatever is missing is installed from the Debian archive (apt-get update only when
# something is), the system instances Debian then starts are stopped (tests and benchmarks start
# their own on free ports) and, for the tests, Exim is unpacked into .cache/exim. As any other user,
# a missing piece stops the run at once with one line naming the packages to install. Nothing is
# done when everything is there. (The Apache Kafka jars need the project's .venv: the Makefile
# fetches them once it exists.)
# PATCHGATE_SYSTEM_PACKAGES replaces the package list of the chosen set (to try this script out).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:?usage: scripts/system-deps.sh make|venv|test|bench}"

# "package:probe" pairs: a package counts as present when dpkg has it installed or, on a machine
# without dpkg, when its probe exists: an absolute path, py:<module> (importable by python3) or a command.
make_packages=("make:make")
venv_packages=("python3-venv:py:ensurepip")
test_packages=(
  "python3-venv:py:ensurepip"                # the project's .venv
  "make:make" "git:git" "ca-certificates:/etc/ssl/certs/ca-certificates.crt"
  "redis-server:redis-server"                # the tests' Redis (and redis-cli for the Cluster tests)
  "redis-sentinel:redis-sentinel"            # the Sentinel failover test
  "postfix:/usr/sbin/postfix"                # the edge end-to-end tests (and smtp-source/smtp-sink)
  "openjdk-17-jre-headless:java" "maven:mvn" # Apache Kafka, its jars fetched through Maven
  "chromium:/usr/bin/chromium"               # the report page test, driven by Playwright
  "fonts-dejavu-core:/usr/share/fonts/truetype/dejavu"
  "docker-compose:docker-compose"            # only `docker-compose config`: no engine needed
  # the shared libraries of the Exim that scripts/exim/fetch.sh unpacks (not installed: it would
  # replace Postfix); libraries only, so they sit beside Postfix
  "libgnutls-dane0:/usr/lib/x86_64-linux-gnu/libgnutls-dane.so.0"
  "libidn12:/usr/lib/x86_64-linux-gnu/libidn.so.12"
)
bench_packages=("python3-venv:py:ensurepip" "redis-server:redis-server" "postfix:/usr/sbin/postfix")

case "$target" in
  make) wanted=("${make_packages[@]}") ;;
  venv) wanted=("${venv_packages[@]}") ;;
  test) wanted=("${test_packages[@]}") ;;
  bench) wanted=("${bench_packages[@]}") ;;
  *) echo "scripts/system-deps.sh: unknown set '$target' (make, venv, test or bench)" >&2; exit 2 ;;
esac
if [[ -n "${PATCHGATE_SYSTEM_PACKAGES:-}" ]]; then
  read -r -a wanted <<<"$PATCHGATE_SYSTEM_PACKAGES"
fi

is_root() { [[ "$(id -u)" -eq 0 ]]; }

probe_found() {
  local probe="$1"
  case "$probe" in
    /*) [[ -e "$probe" ]] ;;
    py:*) python3 -c "import ${probe#py:}" >/dev/null 2>&1 ;;
    *) command -v "$probe" >/dev/null 2>&1 ;;
  esac
}

# Prints the packages of "$@" (package:probe pairs) that are missing, space-separated.
missing_packages() {
  local names=() installed="" entry package missing=()
  for entry in "$@"; do names+=("${entry%%:*}"); done
  if command -v dpkg-query >/dev/null 2>&1; then
    installed="$(dpkg-query -W -f='${Package} ${Status}\n' "${names[@]}" 2>/dev/null \
                 | awk '$NF == "installed" { print $1 }' || true)"
  fi
  for entry in "$@"; do
    package="${entry%%:*}"
    if ! grep -qx -- "$package" <<<"$installed" && ! probe_found "${entry#*:}"; then
      missing+=("$package")
    fi
  done
  echo "${missing[*]:-}"
}

apt_updated=0
apt_update() {
  if [[ "$apt_updated" -eq 0 ]]; then
    apt-get update -qq
    apt_updated=1
  fi
}

install_packages() {
  echo "make $target: installing $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt_update
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || refuse "apt-get install $* failed (see apt's message above)"
  # Debian starts the system instances; ours run on free ports. They may not be running at all.
  for service in postfix redis-server redis-sentinel; do
    if [[ " $* " == *" $service "* ]]; then service "$service" stop >/dev/null 2>&1 || true; fi
  done
}

exim_ready() { [[ -x "$root/.cache/exim/root/usr/sbin/exim4" ]] && getent passwd Debian-exim >/dev/null; }

fetch_exim() {
  exim_ready && return 0
  # apt-get download needs the package lists, which a fresh image may not have
  apt-cache show exim4-daemon-light >/dev/null 2>&1 || apt_update
  "$root/scripts/exim/fetch.sh" >/dev/null
}

refuse() {
  echo "make $target: $1" >&2
  exit 1
}

main() {
  local missing
  missing="$(missing_packages "${wanted[@]}")"
  if ! is_root; then
    [[ -z "$missing" ]] || refuse "missing system packages: $missing; run as root: apt-get install $missing"
    [[ "$target" == venv || "$target" == make ]] && return 0
    # Postfix drops privileges itself: its end-to-end tests and benchmark only run as root
    refuse "must run as root (Postfix, started by the $target run, drops privileges itself)"
  fi
  # shellcheck disable=SC2086  # one word per package
  [[ -z "$missing" ]] || install_packages $missing
  if [[ "$target" == test ]]; then fetch_exim; fi
}

main
