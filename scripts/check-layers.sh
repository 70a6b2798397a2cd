#!/usr/bin/env bash
# Fails when a module of the agent imports a module of a higher layer.
# Layers, top to bottom (docs/ARCHITECTURE.md):
#   commands → daemon → policy/coverage/checks/fim/remediate → rootfs/host → plumb-core
# A module may use its own layer and the ones below it. Every `crate::X`
# path in agent/src is looked at, grouped ones (`crate::{a, b::c}`) too,
# comments excepted; X must be listed below. lib.rs, the crate root, sees all,
# and so does fuzz.rs (entry points for fuzz/, built with `--features fuzzing`).
set -euo pipefail
cd "$(dirname "$0")/.."

SRC=agent/src

# layer of each top-level module of agent/src (higher number: higher layer)
declare -A LAYER=(
    [main]=5 [cli]=5 [commands]=5
    [daemon]=4
    [policy]=3 [coverage]=3 [checks]=3 [fim]=3 [remediate]=3 [trust]=3 [output]=3
    [rootfs]=2 [host]=2 [dpkg]=2 [userdb]=2 [sshd_config]=2 [sysctl_d]=2 [systemd_units]=2 [key_value]=2
    [lib]=6 [fuzz]=6
)

top_module() { # agent/src/a/b.rs → a ; agent/src/a.rs → a
    local rel=${1#"$SRC"/}
    rel=${rel%%/*}
    echo "${rel%.rs}"
}

# "line:name" for each top-level module named after `crate::` in a file.
crate_paths() {
    perl -0777 -ne '
        s{//[^\n]*}{}g;                       # comments (line numbers kept)
        while (/crate::(\{|[A-Za-z_]\w*)/g) {
            my $line = 1 + (substr($_, 0, $-[0]) =~ tr/\n//);
            if ($1 ne "{") { print "$line:$1\n"; next; }
            my ($depth, $i, $name, $top) = (1, pos($_), "", 1);
            while ($depth > 0 && $i < length) {
                my $c = substr($_, $i++, 1);
                if    ($c eq "{") { $depth++; }
                elsif ($c eq "}") { $depth--; }
                elsif ($depth == 1 && $c eq ",") { $top = 1; next; }
                if ($depth == 1 && $top && $c =~ /\w/) { $name .= $c; next; }
                if ($name ne "") { print "$line:$name\n" unless $name eq "self"; $name = ""; }
                $top = 0 if $c =~ /\S/;
            }
        }
    ' "$1"
}

status=0
while IFS= read -r file; do
    from=$(top_module "$file")
    from_layer=${LAYER[$from]:-}
    if [ -z "$from_layer" ]; then
        echo "$file: module '$from' has no layer in $0" >&2
        status=1
        continue
    fi
    # `crate::name` outside comments; items of lib.rs itself (EXIT_*) are
    # at the bottom.
    while IFS=: read -r line to; do
        [[ $to =~ ^[A-Z] ]] && continue
        to_layer=${LAYER[$to]:-}
        if [ -z "$to_layer" ]; then
            echo "$file:$line: crate::$to has no layer in $0" >&2
            status=1
        elif [ "$to_layer" -gt "$from_layer" ]; then
            echo "$file:$line: $from (layer $from_layer) uses crate::$to (layer $to_layer)" >&2
            status=1
        fi
    done < <(crate_paths "$file")
done < <(find "$SRC" -name '*.rs' | sort)

if [ "$status" -eq 0 ]; then
    echo "layers: ok"
fi
exit "$status"
