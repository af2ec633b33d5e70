#!/usr/bin/env bash
# Install the pinned Claude Code CLI into <repo>/.tools/claude-code/ (local to
# this checkout, never global) for the end-to-end tests that run the real
# `claude` binary offline against a fake Anthropic API.
#
# - idempotent: does nothing if the pinned version is already installed and works
# - prints the absolute path of the working native binary as its LAST line
# - creates the stable symlink <repo>/.tools/bin/claude -> that binary
# - any problem fails loudly (non-zero exit, message on stderr)
#
# Env: CLAUDE_CODE_VERSION overrides the pinned version (tests expect 2.1.197).
set -euo pipefail

VERSION="${CLAUDE_CODE_VERSION:-2.1.197}"
PKG="@anthropic-ai/claude-code"

die() {
    echo "install-claude.sh: ERROR: $*" >&2
    exit 1
}
log() { echo "install-claude.sh: $*" >&2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
TOOLS="$REPO/.tools"
DEST="$TOOLS/claude-code"
BIN_DIR="$TOOLS/bin"
LINK="$BIN_DIR/claude"

# Which optional platform package carries the native binary on this machine.
platform_pkg() {
    local os arch libc=""
    case "$(uname -s)" in
        Linux) os=linux ;;
        Darwin) os=darwin ;;
        *) die "unsupported OS $(uname -s)" ;;
    esac
    case "$(uname -m)" in
        x86_64 | amd64) arch=x64 ;;
        aarch64 | arm64) arch=arm64 ;;
        *) die "unsupported CPU $(uname -m)" ;;
    esac
    if [ "$os" = linux ] && ! (ldd --version 2>&1 | grep -qiE 'glibc|gnu libc'); then
        if ldd --version 2>&1 | grep -qi musl || [ -e /lib/ld-musl-x86_64.so.1 ] || [ -e /lib/ld-musl-aarch64.so.1 ]; then
            libc="-musl"
        fi
    fi
    echo "$PKG-$os-$arch$libc"
}

# Prints "ok" if $1 is an executable whose --version reports $VERSION.
check_binary() {
    local bin="$1" out
    [ -f "$bin" ] && [ -x "$bin" ] || return 1
    # A real binary answers instantly; the timeout guards against a stub
    # that hangs (e.g. waits for a postinstall that never ran).
    out="$(timeout 60 "$bin" --version </dev/null 2>&1)" || return 1
    case "$out" in
        "$VERSION"*) return 0 ;;
        *) return 1 ;;
    esac
}

# Candidate binaries, best first: the platform package's binary (always the
# real native executable), then the main package's bin (the real binary only
# if the postinstall script ran and replaced its stub).
candidates() {
    local plat
    plat="$(platform_pkg)"
    echo "$DEST/node_modules/$plat/claude"
    echo "$DEST/node_modules/$PKG/bin/claude.exe"
    echo "$DEST/node_modules/.bin/claude"
}

find_working_binary() {
    local c real
    while IFS= read -r c; do
        [ -e "$c" ] || continue
        real="$(readlink -f "$c")"
        if check_binary "$real"; then
            echo "$real"
            return 0
        fi
    done < <(candidates)
    return 1
}

installed_version() {
    local pj="$DEST/node_modules/$PKG/package.json"
    [ -f "$pj" ] || return 0
    node -e 'process.stdout.write(require(process.argv[1]).version || "")' "$pj" 2>/dev/null || true
}

make_link() {
    local bin="$1"
    mkdir -p "$BIN_DIR"
    ln -sfn "$bin" "$LINK.tmp.$$"
    mv -Tf "$LINK.tmp.$$" "$LINK"
    [ "$(readlink -f "$LINK")" = "$bin" ] || die "symlink $LINK does not point to $bin"
    check_binary "$LINK" || die "$LINK --version does not report $VERSION"
}

# ---------------------------------------------------------------- fast path
if [ "$(installed_version)" = "$VERSION" ]; then
    if BIN="$(find_working_binary)"; then
        log "claude-code $VERSION already installed in $DEST"
        make_link "$BIN"
        echo "$BIN"
        exit 0
    fi
    log "claude-code $VERSION present in $DEST but no working binary; reinstalling"
fi

# ---------------------------------------------------------------- install
command -v npm >/dev/null 2>&1 || die "npm not found on PATH (needed to install $PKG@$VERSION)"
command -v node >/dev/null 2>&1 || die "node not found on PATH"

PLAT="$(platform_pkg)"
log "installing $PKG@$VERSION (+ $PLAT) into $DEST"
rm -rf "$DEST"
mkdir -p "$DEST"
cat >"$DEST/package.json" <<EOF
{
  "name": "cloudagent-claude-code-tool",
  "private": true,
  "description": "local install of the Claude Code CLI for cloudagent-daemon e2e tests (see .ci/install-claude.sh)",
  "dependencies": {
    "$PKG": "$VERSION"
  }
}
EOF

# --include=optional: the native binary lives in the optional platform package,
# which an npm config of omit=optional would silently drop.
if ! (cd "$DEST" && npm install --no-audit --no-fund --no-update-notifier \
    --include=optional --save-exact "$PKG@$VERSION" >&2); then
    die "npm install $PKG@$VERSION failed"
fi

[ "$(installed_version)" = "$VERSION" ] ||
    die "after npm install, $DEST/node_modules/$PKG has version '$(installed_version)', expected $VERSION"

if [ ! -e "$DEST/node_modules/$PLAT/claude" ]; then
    # The optional dependency was skipped (npm bug/config); install it explicitly.
    log "platform package $PLAT missing; installing it explicitly"
    (cd "$DEST" && npm install --no-audit --no-fund --no-update-notifier \
        --no-save "$PLAT@$VERSION" >&2) || die "npm install $PLAT@$VERSION failed"
fi

# npm may drop the exec bit of a file in a tarball only in odd setups; be sure.
[ -f "$DEST/node_modules/$PLAT/claude" ] && chmod +x "$DEST/node_modules/$PLAT/claude" || true

BIN="$(find_working_binary)" || {
    log "candidates tried:"
    candidates | while IFS= read -r c; do
        if [ -e "$c" ]; then
            log "  $c -> $(timeout 60 "$c" --version </dev/null 2>&1 | head -c 300 || true)"
        else
            log "  $c (missing)"
        fi
    done
    die "no working claude binary reporting version $VERSION found under $DEST"
}

make_link "$BIN"
log "installed: $("$BIN" --version </dev/null 2>&1)"
log "symlink:   $LINK -> $BIN"
echo "$BIN"
