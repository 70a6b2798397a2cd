#!/usr/bin/env bash
# A freshly installed Debian 12 server as a directory, for the test that runs
# the shipped baseline on it and compares every verdict with what such a
# system must get (tests/suite/debian12_root.rs). Made with debootstrap
# (default variant: the packages of priority required and important, which
# is what the Debian installer puts on a server before tasks, plus
# openssh-server), never installed onto this machine, nothing started in it.
#
#   eval "$(scripts/debian12-root.sh)"       # exports PLUMB_TEST_DEBIAN12_ROOT
#   cargo test -p plumb-agent --test tests suite::debian12_root -- --ignored
#
# Needs root (debootstrap, and file owners kept as Debian sets them) and
# debootstrap. The tree is $PLUMB_DEBIAN12_DIR (default target/debian12/root);
# a second run reuses it. The tarball $PLUMB_DEBIAN12_CACHE (default
# target/debian12.tar) is kept between runs, as packaging/test-install.sh's
# PLUMB_CHROOT_CACHE is: with it, a new tree is unpacked instead of
# downloaded, and the verdicts do not move with Debian's point releases until
# it is deleted. $PLUMB_DEBIAN_MIRROR picks the mirror. stdout carries only
# the `export` line.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${PLUMB_DEBIAN12_DIR:-$repo/target/debian12/root}"
cache="${PLUMB_DEBIAN12_CACHE:-$repo/target/debian12.tar}"
mirror="${PLUMB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

[ "$(id -u)" = 0 ] || { echo "debian12-root: needs root (debootstrap, file owners)" >&2; exit 1; }

# The tree is made under a temporary name and renamed when complete, so an
# interrupted run (a debootstrap killed half-way) is never taken for a root.
if [ ! -f "$root/etc/debian_version" ]; then
  work="$root.partial"
  # debootstrap mounts proc in the tree; an interrupted one may leave it.
  if mountpoint -q "$work/proc" 2>/dev/null; then umount "$work/proc"; fi
  rm -rf "$work" "$root"
  mkdir -p "$work"
  if [ -f "$cache" ]; then
    echo "debian12-root: unpacking $cache" >&2
    tar -C "$work" -xf "$cache" >&2
  else
    command -v debootstrap >/dev/null || { echo "debian12-root: debootstrap is not installed" >&2; exit 1; }
    echo "debian12-root: debootstrap bookworm into $work (a few minutes)" >&2
    log="$(dirname "$root")/debootstrap.log"
    if ! debootstrap --include=openssh-server bookworm "$work" "$mirror" >"$log" 2>&1; then
      tail -20 "$log" >&2
      if mountpoint -q "$work/proc" 2>/dev/null; then umount "$work/proc"; fi
      rm -rf "$work"
      echo "debian12-root: debootstrap failed (log: $log)" >&2
      exit 1
    fi
    # Left by debootstrap in the tree; a real install has none of them.
    rm -rf "$work/debootstrap" "$work"/var/cache/apt/archives/*.deb
    tar -C "$work" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
  fi
  mv "$work" "$root"
fi
echo "export PLUMB_TEST_DEBIAN12_ROOT=$root"
