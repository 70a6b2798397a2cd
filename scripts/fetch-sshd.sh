#!/usr/bin/env bash
# Fetches Debian's real sshd for the differential test (tests/sshd_oracle.rs)
# without installing anything: `apt-get download` of openssh-server and
# libwrap0 into DIR, `dpkg-deb -x` into DIR/root, and a wrapper DIR/sshd that
# runs DIR/root/usr/sbin/sshd with the extracted libwrap. Prints the wrapper's
# path; DIR/openssh-server.version holds the package version, which the test
# writes into each checked root's dpkg status.
#
#   scripts/fetch-sshd.sh DIR [VERSION]     e.g. VERSION=1:9.2p1-2+deb12u7
#   PLUMB_TEST_SSHD=$(scripts/fetch-sshd.sh /tmp/sshd) \
#     cargo test -p plumb-agent --test sshd_oracle -- --ignored
#
# Nothing is configured, started or written outside DIR; the test runs sshd
# -T in a private mount namespace.
set -euo pipefail
dir=${1:?usage: fetch-sshd.sh DIR [VERSION]}
version=${2:-}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
cd "$dir"
rm -f ./*.deb
pkg=openssh-server${version:+=$version}
# apt-get download writes into the current directory; as root it warns that
# _apt cannot write there, which is harmless.
if ! apt-get download -q "$pkg" libwrap0 >download.log 2>&1; then
  cat download.log >&2
  echo "fetch-sshd: apt-get download $pkg libwrap0 failed (run apt-get update?)" >&2
  exit 1
fi
rm -rf root
mkdir root
for deb in ./*.deb; do
  dpkg-deb -x "$deb" root
done
server=$(ls ./openssh-server_*.deb)
dpkg-deb -f "$server" Version >openssh-server.version
lib=$(dirname "$(find "$dir/root" -name 'libwrap.so.0' | head -n1)")
[ -x root/usr/sbin/sshd ] || { echo "fetch-sshd: no usr/sbin/sshd in $server" >&2; exit 1; }
cat >sshd <<EOF
#!/bin/sh
# Debian's sshd $(cat openssh-server.version), extracted by scripts/fetch-sshd.sh.
LD_LIBRARY_PATH=$lib exec $dir/root/usr/sbin/sshd "\$@"
EOF
chmod 0755 sshd
echo "$dir/sshd"
