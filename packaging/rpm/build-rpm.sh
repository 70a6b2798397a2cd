#!/usr/bin/env bash
# Builds plumb and plumb-collector RPMs from release binaries into OUT_DIR.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$top/target/packages}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rpmbuild -bb --quiet \
  --define "_topdir $tmp" --define "_plumb_top $top" --define "_plumb_version $version" \
  --define "_build_id_links none" \
  "$top/packaging/rpm/plumbline.spec" >/dev/null
mkdir -p "$out"
find "$tmp/RPMS" -name '*.rpm' -exec cp {} "$out/" \;
ls "$out"/*.rpm
