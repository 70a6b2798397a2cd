#!/usr/bin/env bash
# Builds the .deb packages, installs them into a throwaway Debian chroot made
# with debootstrap (never onto this machine), and checks files, owners, modes,
# conffiles, the installed binaries, an upgrade that keeps a modified conffile,
# removal and purge; verifies both systemd units with systemd-analyze inside
# the chroot; and builds the RPMs from the spec. Needs root, debootstrap,
# go-md2man, rpm (rpmbuild). Prints "N passed, N failed".
# env: PLUMB_CHROOT_CACHE=FILE.tar  reuse a debootstrap tarball between runs
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/plumb-test-install.XXXXXX)
root=$work/chroot
pass=0 fail=0
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

ok() { pass=$((pass + 1)); echo "ok   - $*"; }
bad() { fail=$((fail + 1)); echo "FAIL - $*"; }
check() { local what=$1; shift; if "$@" >"$work/out" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/       /' "$work/out" | tail -20; fi; }
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
# A private mount namespace so /proc is mounted for the chroot only and
# disappears with the command: the host's mount table is never touched.
in_root_proc() { unshare --mount --propagation private -- sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"' "$root" "$@"; }
# Names resolved by the chroot's own passwd/group, not the host's.
mode_of() { chroot "$root" stat -c '%a %U:%G' "$1"; }

[ "$(id -u)" = 0 ] || { echo "test-install: needs root (chroot)" >&2; exit 2; }

echo "== build"
(cd "$top" && cargo build --release --locked -p plumb-agent -p plumb-collector) || exit 2
BIN_DIR=$top/target/release DEB_REVISION=1 "$top/packaging/build-deb.sh" "$work/v1" || exit 2
BIN_DIR=$top/target/release DEB_REVISION=2 "$top/packaging/build-deb.sh" "$work/v2" >/dev/null || exit 2

echo "== chroot"
if [ -n "${PLUMB_CHROOT_CACHE:-}" ] && [ -f "$PLUMB_CHROOT_CACHE" ]; then
  mkdir -p "$root" && tar -C "$root" -xf "$PLUMB_CHROOT_CACHE"
else
  debootstrap --variant=minbase --include=systemd,init-system-helpers bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; echo "test-install: debootstrap failed" >&2; exit 2; }
  [ -n "${PLUMB_CHROOT_CACHE:-}" ] && tar -C "$root" -cf "$PLUMB_CHROOT_CACHE" .
fi
cp "$work"/v1/*.deb "$work"/v2/*.deb "$root/tmp/"
v1=$(cd "$work/v1" && ls plumb_*.deb) c1=$(cd "$work/v1" && ls plumb-collector_*.deb)
v2=$(cd "$work/v2" && ls plumb_*.deb) c2=$(cd "$work/v2" && ls plumb-collector_*.deb)

echo "== install"
check "dpkg -i installs both packages" in_root dpkg -i "/tmp/$v1" "/tmp/$c1"
check "plumb --version from /usr/bin" in_root /usr/bin/plumb --version
check "plumb-collector --version from /usr/bin" in_root /usr/bin/plumb-collector --version
for f in /usr/bin/plumb /usr/bin/plumb-collector /etc/plumb/agent.toml /etc/plumb/collector.toml \
         /usr/share/plumb/baselines/issp-linux-server.toml /lib/systemd/system/plumb-agent.service \
         /lib/systemd/system/plumb-collector.service /usr/share/man/man8/plumb.8.gz \
         /usr/share/man/man8/plumb-collector.8.gz /usr/share/man/man5/plumb.toml.5.gz \
         /usr/share/bash-completion/completions/plumb /usr/share/zsh/vendor-completions/_plumb \
         /usr/share/fish/vendor_completions.d/plumb-collector.fish \
         /usr/share/plumb/systemd/remediation.conf; do
  check "installed $f" test -e "$root$f"
done
check "agent binary 755 root:root" test "$(mode_of /usr/bin/plumb)" = "755 root:root"
check "agent config 640 root:root" test "$(mode_of /etc/plumb/agent.toml)" = "640 root:root"
check "collector config 640 root:plumb-collector" test "$(mode_of /etc/plumb/collector.toml)" = "640 root:plumb-collector"
check "agent state dir 700 root:root" test "$(mode_of /var/lib/plumb)" = "700 root:root"
check "collector state dir 700 plumb-collector" test "$(mode_of /var/lib/plumb-collector)" = "700 plumb-collector:plumb-collector"
check "collector system user has no login shell" sh -c "grep -q '^plumb-collector:.*:/usr/sbin/nologin\$' '$root/etc/passwd'"
conffiles=$(chroot "$root" dpkg-query -W -f='${Conffiles}\n' plumb plumb-collector)
check "conffiles registered" sh -c "echo '$conffiles' | grep -q '^ /etc/plumb/agent.toml ' && echo '$conffiles' | grep -q '^ /etc/plumb/collector.toml '"
check "remediation drop-in installed disabled" sh -c "! test -e '$root/etc/systemd/system/plumb-agent.service.d/remediation.conf'"
check "units enabled" sh -c "test -L '$root/etc/systemd/system/multi-user.target.wants/plumb-agent.service' && test -L '$root/etc/systemd/system/multi-user.target.wants/plumb-collector.service'"
check "man page renders" sh -c "zcat '$root/usr/share/man/man8/plumb.8.gz' | grep -q 'plumb check'"

echo "== run"
in_root_proc /usr/bin/plumb check --format json >"$work/report.json" 2>"$work/check.err"; rc=$?
check "plumb check runs from the installed path (exit $rc)" test "$rc" -le 1
check "plumb check prints a JSON report" python3 -c "import json,sys; r=json.load(open('$work/report.json')); assert r['results'] and r['summary']"
check "installed baseline lints clean" in_root /usr/bin/plumb baseline lint /usr/share/plumb/baselines/issp-linux-server.toml
check "agent config validates" in_root /usr/bin/plumb agent --config /etc/plumb/agent.toml --validate
check "systemd-analyze verify plumb-agent.service" in_root systemd-analyze verify --man=no /lib/systemd/system/plumb-agent.service
check "systemd-analyze verify plumb-collector.service" in_root systemd-analyze verify --man=no /lib/systemd/system/plumb-collector.service
check "the default agent unit cannot chown or override permissions" sh -c "chroot '$root' systemd-analyze security --offline=true /lib/systemd/system/plumb-agent.service 2>/dev/null | grep -q 'Service cannot change file ownership'"
for u in plumb-agent plumb-collector; do
  score=$(in_root systemd-analyze security --offline=true "/lib/systemd/system/$u.service" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
  echo "     exposure $u: ${score:-?}"
done
# The remediation drop-in, enabled as docs/remediation.md says, then disabled again.
mkdir -p "$root/etc/systemd/system/plumb-agent.service.d"
ln -s /usr/share/plumb/systemd/remediation.conf "$root/etc/systemd/system/plumb-agent.service.d/remediation.conf"
verify=$(in_root systemd-analyze verify --man=no /lib/systemd/system/plumb-agent.service 2>&1)
check "systemd-analyze verify plumb-agent.service + remediation.conf, no warning" sh -c 'test -z "$1" || { echo "$1"; false; }' _ "$verify"
security=$(in_root systemd-analyze security --offline=true /lib/systemd/system/plumb-agent.service 2>/dev/null)
check "remediation.conf grants the write capabilities" grep -q 'CAP_(CHOWN|FSETID|SETFCAP).*unrestricted' <<<"$security"
score=$(sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p' <<<"$security")
echo "     exposure plumb-agent + remediation.conf: ${score:-?}"
rm -r "$root/etc/systemd/system/plumb-agent.service.d"

echo "== upgrade keeps a modified conffile"
echo "# local change" >> "$root/etc/plumb/agent.toml"
check "dpkg -i upgrades to revision 2" in_root dpkg -i --force-confold "/tmp/$v2" "/tmp/$c2"
check "modified conffile kept" grep -q '^# local change' "$root/etc/plumb/agent.toml"
check "version is revision 2" sh -c "chroot '$root' dpkg-query -W -f='\${Version}' plumb | grep -q -- '-2\$'"

echo "== remove and purge"
check "dpkg -r removes both" in_root dpkg -r plumb plumb-collector
check "binaries gone after remove" sh -c "! test -e '$root/usr/bin/plumb' && ! test -e '$root/usr/bin/plumb-collector'"
check "conffiles kept after remove" test -e "$root/etc/plumb/agent.toml"
check "dpkg -P purges both" in_root dpkg -P plumb plumb-collector
check "nothing left after purge" sh -c "! test -e '$root/etc/plumb' && ! test -e '$root/var/lib/plumb' && ! test -e '$root/var/lib/plumb-collector' && ! test -e '$root/usr/share/plumb'"

echo "== rpm"
if command -v rpmbuild >/dev/null; then
  check "rpmbuild builds both RPMs from the spec" "$top/packaging/rpm/build-rpm.sh" "$work/rpm"
  check "rpm carries the same layout" sh -c "rpm -qlp '$work'/rpm/plumb-[0-9]*.rpm | grep -q /usr/share/plumb/baselines/issp-linux-server.toml && rpm -qlp '$work'/rpm/plumb-collector-*.rpm | grep -q /usr/lib/systemd/system/plumb-collector.service"
else
  bad "rpmbuild not installed"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
