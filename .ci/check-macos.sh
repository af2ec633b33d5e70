#!/usr/bin/env bash
# Type-check and lint (clippy, warnings are errors, as on Linux) the crate
# (library, binary, tests, benches) for macOS from Linux. No macOS SDK or
# linker is needed for a check; the C parts of dependencies (ring) are only
# compiled, never linked, so a stub compiler that produces empty objects is
# enough. Needs the Rust standard library for
# the target: `rustup target add x86_64-apple-darwin` (done here if missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET=x86_64-apple-darwin
if ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi

stub=$(mktemp -d)
trap 'rm -rf "$stub"' EXIT
cat >"$stub/cc" <<'SH'
#!/bin/sh
# Stub C compiler for a check build: write an empty object for -o.
out=""
while [ $# -gt 0 ]; do
    case "$1" in -o) out="$2"; shift ;; esac
    shift
done
[ -n "$out" ] && : >"$out"
exit 0
SH
cat >"$stub/ar" <<'SH'
#!/bin/sh
# Stub archiver for a check build: write an empty archive.
for a in "$@"; do
    case "$a" in *.a) printf '!<arch>\n' >"$a"; exit 0 ;; esac
done
exit 0
SH
chmod +x "$stub/cc" "$stub/ar"

CC_x86_64_apple_darwin="$stub/cc" AR_x86_64_apple_darwin="$stub/ar" \
    cargo clippy --locked --all-targets --target "$TARGET" "$@" -- -D warnings
