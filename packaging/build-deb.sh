#!/usr/bin/env bash
# Builds plumb_VERSION_ARCH.deb and plumb-collector_VERSION_ARCH.deb from
# release binaries, with dpkg-deb (no tool beyond dpkg and go-md2man).
# usage: packaging/build-deb.sh [OUT_DIR]    env: BIN_DIR, DEB_REVISION
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/target/packages}
bin=${BIN_DIR:-$top/target/release}
rev=${DEB_REVISION:-1}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -1)
arch=$(dpkg --print-architecture)
mkdir -p "$out"
for b in plumb plumb-collector; do
  [ -x "$bin/$b" ] || { echo "build-deb: $bin/$b missing: run cargo build --release first" >&2; exit 2; }
done
command -v go-md2man >/dev/null || { echo "build-deb: go-md2man missing (apt-get install go-md2man)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

man() { # man SRC.md SECTION DEST_DIR
  local name; name=$(basename "$1" .md)
  mkdir -p "$3/usr/share/man/man$2"
  go-md2man -in "$1" -out "$3/usr/share/man/man$2/$name"
  gzip -9n "$3/usr/share/man/man$2/$name"
}

completions() { # completions BINARY STAGE
  local name; name=$(basename "$1")
  install -d "$2/usr/share/bash-completion/completions" "$2/usr/share/zsh/vendor-completions" "$2/usr/share/fish/vendor_completions.d"
  "$1" completions bash > "$2/usr/share/bash-completion/completions/$name"
  "$1" completions zsh > "$2/usr/share/zsh/vendor-completions/_$name"
  "$1" completions fish > "$2/usr/share/fish/vendor_completions.d/$name.fish"
}

control() { # control STAGE PACKAGE DESCRIPTION
  local size; size=$(du -sk --exclude=DEBIAN "$1" | cut -f1)
  cat > "$1/DEBIAN/control" <<CTRL
Package: $2
Version: $version-$rev
Architecture: $arch
Maintainer: Plumbline developers <dev@plumbline.invalid>
Section: admin
Priority: optional
Depends: libc6 (>= 2.34)
Installed-Size: $size
Homepage: https://plumbline.invalid
Description: $3
CTRL
}

docs() { # docs STAGE PACKAGE
  install -d "$1/usr/share/doc/$2"
  install -m 0644 "$top/README.md" "$1/usr/share/doc/$2/README.md"
  printf 'Plumbline\nLicense: Apache-2.0\n' > "$1/usr/share/doc/$2/copyright"
}

# --- plumb (the agent) ---
s=$work/plumb
install -d -m 0755 "$s/DEBIAN" "$s/usr/bin" "$s/etc/plumb" "$s/usr/share/plumb/baselines" "$s/usr/share/plumb/systemd" "$s/lib/systemd/system"
install -m 0755 "$bin/plumb" "$s/usr/bin/plumb"
install -m 0644 "$top"/baselines/*.toml "$s/usr/share/plumb/baselines/"
install -m 0640 "${PLUMB_AGENT_CONF:-$top/agent/agent.example.toml}" "$s/etc/plumb/agent.toml"
install -m 0644 "$top/systemd/plumb-agent.service" "$s/lib/systemd/system/"
# The remediation drop-in ships disabled: not under /etc/systemd (docs/remediation.md).
install -m 0644 "$top/systemd/remediation.conf" "$s/usr/share/plumb/systemd/"
man "$top/docs/man/plumb.8.md" 8 "$s"
man "$top/docs/man/plumb.toml.5.md" 5 "$s"
completions "$bin/plumb" "$s"
docs "$s" plumb
echo /etc/plumb/agent.toml > "$s/DEBIAN/conffiles"
install -m 0755 "$top/packaging/deb/plumb.postinst" "$s/DEBIAN/postinst"
install -m 0755 "$top/packaging/deb/plumb.prerm" "$s/DEBIAN/prerm"
install -m 0755 "$top/packaging/deb/plumb.postrm" "$s/DEBIAN/postrm"
control "$s" plumb "host hardening and file integrity agent
 Checks the host against a signed hardening baseline, watches file
 integrity with cryptographic hashes, and reports drift to a collector
 over mutual TLS."
dpkg-deb --root-owner-group -Zxz --build "$s" "$out/plumb_${version}-${rev}_${arch}.deb" >/dev/null

# --- plumb-collector ---
s=$work/plumb-collector
install -d -m 0755 "$s/DEBIAN" "$s/usr/bin" "$s/etc/plumb" "$s/lib/systemd/system"
install -m 0755 "$bin/plumb-collector" "$s/usr/bin/plumb-collector"
install -m 0640 "${PLUMB_COLLECTOR_CONF:-$top/collector/collector.example.toml}" "$s/etc/plumb/collector.toml"
install -m 0644 "$top/systemd/plumb-collector.service" "$s/lib/systemd/system/"
man "$top/docs/man/plumb-collector.8.md" 8 "$s"
completions "$bin/plumb-collector" "$s"
docs "$s" plumb-collector
echo /etc/plumb/collector.toml > "$s/DEBIAN/conffiles"
install -m 0755 "$top/packaging/deb/plumb-collector.postinst" "$s/DEBIAN/postinst"
install -m 0755 "$top/packaging/deb/plumb-collector.prerm" "$s/DEBIAN/prerm"
install -m 0755 "$top/packaging/deb/plumb-collector.postrm" "$s/DEBIAN/postrm"
control "$s" plumb-collector "central collector for Plumbline agents
 Receives the drift events of Plumbline agents over mutual TLS, stores
 them, answers fleet queries and serves signed baselines."
dpkg-deb --root-owner-group -Zxz --build "$s" "$out/plumb-collector_${version}-${rev}_${arch}.deb" >/dev/null
ls "$out"/*.deb
