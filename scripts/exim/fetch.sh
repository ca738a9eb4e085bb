#!/usr/bin/env bash
# Unpack Debian's Exim (exim4-daemon-light; its shared libraries are installed by
# scripts/system-deps.sh test) into .cache/exim/root, without installing it: Debian's MTAs conflict, and installing Exim would
# remove Postfix, which the edge tests also need. The Exim test runs this binary in host-checking
# mode (`exim -bh`), which needs no daemon, only Exim's compiled-in user to exist.
# scripts/system-deps.sh (make test) runs this as root, with the package lists in place; idempotent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="$root/.cache/exim"
if [[ -x "$cache/root/usr/sbin/exim4" ]]; then
  echo "$cache/root/usr/sbin/exim4"
  exit 0
fi
mkdir -p "$cache/debs"
(cd "$cache/debs" && apt-get download -q -o APT::Sandbox::User=root exim4-daemon-light >/dev/null)
for deb in "$cache"/debs/*.deb; do
  dpkg-deb -x "$deb" "$cache/root.partial"
done
mv "$cache/root.partial" "$cache/root"
if ! getent passwd Debian-exim >/dev/null; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin Debian-exim
fi
echo "$cache/root/usr/sbin/exim4"
