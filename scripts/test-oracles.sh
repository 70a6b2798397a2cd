#!/usr/bin/env bash
# The real programs some tests check Plumbline against ("oracles"), fetched
# without installing them on this host. Today: OpenSSH's sshd, unpacked from
# Debian's openssh-server package (and libwrap0, which it links) with
# `apt-get download` + `dpkg-deb -x`; no service, no user, no file outside
# the directory.
#
#   eval "$(scripts/test-oracles.sh)"        # exports PLUMB_TEST_SSHD
#   cargo test --workspace -- --ignored      # the tests that need it (and root)
#
# The directory is $PLUMB_ORACLES_DIR, by default target/oracles; a second
# run reuses what is there. $PLUMB_SSHD_VERSION picks a build of
# openssh-server (e.g. 1:9.2p1-2+deb12u7; default: the candidate of apt);
# its version is written beside the wrapper (openssh-server.version), where
# the sshd differential test reads it. stdout carries only `export` lines.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="${PLUMB_ORACLES_DIR:-$repo/target/oracles}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

fetch() { # package...
  local debs="$dir/debs" apt_opts=()
  mkdir -p "$debs"
  # apt's download sandbox user cannot write into a root-owned directory.
  [ "$(id -u)" = 0 ] && apt_opts=(-o APT::Sandbox::User=root)
  if ! (cd "$debs" && apt-get download "${apt_opts[@]}" "$@") >&2; then
    [ "$(id -u)" = 0 ] || { echo "test-oracles: apt-get download $* failed (try apt-get update)" >&2; exit 1; }
    apt-get update -qq >&2
    (cd "$debs" && apt-get download "${apt_opts[@]}" "$@") >&2
  fi
  for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$dir/root"; done
}

sshd="$dir/root/usr/sbin/sshd"
want="${PLUMB_SSHD_VERSION:-}"
have="$(cat "$dir/openssh-server.version" 2>/dev/null || true)"
if [ ! -x "$sshd" ] || [ -z "$(find "$dir/root" -name libwrap.so.0 2>/dev/null)" ] \
   || { [ -n "$want" ] && [ "$want" != "$have" ]; }; then
  rm -rf "$dir/debs" "$dir/root" "$dir/openssh-server.version"
  fetch "openssh-server${want:+=$want}" libwrap0
  dpkg-deb -f "$(ls "$dir"/debs/openssh-server_*.deb)" Version > "$dir/openssh-server.version"
fi
libdir="$(dirname "$(find "$dir/root" -name libwrap.so.0 | head -n 1)")"

# sshd -t/-T as root want the privilege separation user `sshd` and the
# directory /run/sshd. Rather than create them on the host, the wrapper runs
# sshd in a private mount namespace with its own /run and an /etc/passwd
# that names that user; as another user sshd needs neither.
cat > "$dir/sshd" <<WRAPPER
#!/bin/sh
# sshd unpacked by scripts/test-oracles.sh; see there.
export LD_LIBRARY_PATH="$libdir"
[ "\$(id -u)" = 0 ] || exec "$sshd" "\$@"
exec unshare --mount --propagation private sh -eu -c '
mount -t tmpfs -o mode=0755 plumb-sshd /run
mkdir -m 0755 /run/sshd
cat /etc/passwd > /run/passwd
getent passwd sshd >/dev/null || echo "sshd:x:65534:65534:sshd privsep:/run/sshd:/usr/sbin/nologin" >> /run/passwd
mount --bind /run/passwd /etc/passwd
exec "\$0" "\$@"' "$sshd" "\$@"
WRAPPER
chmod 0755 "$dir/sshd"

# It must run here: a bare configuration with a throwaway host key.
check="$(mktemp -d)"
trap 'rm -rf "$check"' EXIT
ssh-keygen -q -t ed25519 -N "" -f "$check/key" >&2
printf 'HostKey %s\n' "$check/key" > "$check/sshd_config"
if ! "$dir/sshd" -t -f "$check/sshd_config" >&2; then
  echo "test-oracles: $dir/sshd cannot check a configuration here" >&2
  exit 1
fi
echo "test-oracles: sshd $("$dir/sshd" -V 2>&1 | head -n 1) in $dir" >&2
echo "export PLUMB_TEST_SSHD=$dir/sshd"
