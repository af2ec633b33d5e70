#!/usr/bin/env bash
# Keep every OS-specific call in src/platform/ (docs/PLATFORMS.md). Fails
# (exit 1, one `file:line: why` per finding) when:
#
# 1. A Linux-only API is used in a `.rs` file under src/ other than
#    src/platform/linux.rs. The APIs, matched case-insensitively as plain
#    text: OFlags::PATH, /proc/, prctl, PDEATHSIG, SO_PEERCRED, pidfd,
#    inotify, epoll, PR_SET_CHILD_SUBREAPER, and rustix's names for the last
#    two (set_child_subreaper, parent_process_death_signal).
#    Only a line's code part is searched: what is left after removing
#    comments, i.e. `//` to the end of the line (so `///` and `//!` doc
#    comments too) and `/* … */` (across lines), where these start outside
#    a string literal. String literals are code: "/proc/123/stat" in a
#    string is exactly the use this catches, and a `//` inside a string
#    ("http://…") does not start a comment. Strings ("…", b"…") and raw
#    strings (r"…", r#"…"#, br#"…"#) are followed across lines; char
#    literals ('"', '\'') do not open a string.
# 2. A `pub fn` (exactly `pub`, optionally `async`/`unsafe`/`const`; a
#    `pub(super) fn` helper is private to the module) in
#    src/platform/linux.rs has no `pub fn` of the same name in
#    src/platform/macos.rs, or the other way round.
# 3. A `pub fn` in src/platform/mod.rs does not call `imp::<its own name>`
#    in its body: the shared module only delegates, it never holds an OS
#    call itself.
#
# ALLOW lists the exceptions to rule 1, each `path|pattern|reason`; a
# finding in that file for that pattern is reported as allowed, not
# failed. Empty: every use found so far was moved into the platform module.
#
# Usage: .ci/check-platform.sh [--root DIR]   check DIR (default: this repo)
#        .ci/check-platform.sh --self-test    inject violations into temp
#                                             copies and expect each caught
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

ALLOW=(
)

PATTERNS='OFlags::PATH|/proc/|prctl|PDEATHSIG|SO_PEERCRED|pidfd|inotify|epoll|PR_SET_CHILD_SUBREAPER|set_child_subreaper|parent_process_death_signal'

# Print `file:line:code part` for every line of the given files (the code
# part as defined above; empty for a comment-only line).
code_parts() {
    awk '
    FNR == 1 { state = ""; rawclose = "" }
    {
        s = $0; n = length(s); out = ""
        for (i = 1; i <= n; i++) {
            c = substr(s, i, 1); c2 = substr(s, i, 2)
            if (state == "block") {
                if (c2 == "*/") { state = ""; i++ }
                continue
            }
            if (state == "str") {
                out = out c
                if (c == "\\") { out = out substr(s, i + 1, 1); i++ }
                else if (c == "\"") state = ""
                continue
            }
            if (state == "raw") {
                if (substr(s, i, length(rawclose)) == rawclose) {
                    out = out rawclose; i += length(rawclose) - 1; state = ""
                } else out = out c
                continue
            }
            if (c2 == "//") break
            if (c2 == "/*") { state = "block"; i++; continue }
            if (c == "\"") { state = "str"; out = out c; continue }
            # A raw string: r, any number of #, then a quote.
            if (c == "r" && (i == 1 || substr(s, i - 1, 1) !~ /[A-Za-z0-9_]/ || substr(s, i - 1, 1) == "b")) {
                j = i + 1; hashes = ""
                while (substr(s, j, 1) == "#") { hashes = hashes "#"; j++ }
                if (substr(s, j, 1) == "\"") {
                    state = "raw"; rawclose = "\"" hashes
                    out = out substr(s, i, j - i + 1); i = j; continue
                }
            }
            # Char literals that hold a quote or an escape.
            if (c == "\x27" && substr(s, i + 2, 1) == "\x27") { out = out substr(s, i, 3); i += 2; continue }
            if (c == "\x27" && substr(s, i + 1, 1) == "\\" && substr(s, i + 3, 1) == "\x27") {
                out = out substr(s, i, 4); i += 3; continue
            }
            out = out c
        }
        print FILENAME ":" FNR ":" out
    }' "$@"
}

# Rule 1 on the tree at $1.
check_apis() {
    local root=$1 found=0 files
    files=$(cd "$root" && find src -name '*.rs' ! -path src/platform/linux.rs | LC_ALL=C sort)
    [ -n "$files" ] || return 0
    while IFS= read -r hit; do
        local file=${hit%%:*} rest=${hit#*:}
        local line=${rest%%:*} code=${rest#*:}
        local api
        api=$(printf '%s\n' "$code" | grep -oiE "$PATTERNS" | head -n1)
        if allowed "$file" "$api"; then
            echo "allowed: $file:$line: $api ($(allowed_reason "$file" "$api"))"
            continue
        fi
        echo "$file:$line: Linux-only API \`$api\` outside src/platform/linux.rs: move the call into src/platform/{linux,macos}.rs behind a function in src/platform/mod.rs (docs/PLATFORMS.md)"
        echo "    ${code#"${code%%[![:space:]]*}"}"
        found=1
    done < <(cd "$root" && code_parts $files | grep -iE "^[^:]+:[0-9]+:.*($PATTERNS)" || true)
    return $found
}

allowed() { [ -n "$(allowed_reason "$1" "$2")" ]; }
allowed_reason() {
    local entry
    for entry in ${ALLOW[@]+"${ALLOW[@]}"}; do
        IFS='|' read -r path pattern reason <<<"$entry"
        if [ "$path" = "$1" ] && printf '%s' "$2" | grep -qiF "$pattern"; then
            echo "$reason"
            return 0
        fi
    done
}

# `line name` for every `pub fn` of a file's code.
pub_fns() {
    code_parts "$1" | sed -nE 's/^[^:]+:([0-9]+):[[:space:]]*pub[[:space:]]+((async|unsafe|const)[[:space:]]+)*fn[[:space:]]+([A-Za-z_][A-Za-z0-9_]*).*/\1 \4/p'
}

# Rule 2 on the tree at $1.
check_parity() {
    local root=$1 found=0 from to lnum name
    for pair in linux.rs:macos.rs macos.rs:linux.rs; do
        from=src/platform/${pair%%:*}
        to=src/platform/${pair#*:}
        while read -r lnum name; do
            if ! pub_fns "$root/$to" | awk -v n="$name" '$2 == n { ok = 1 } END { exit !ok }'; then
                echo "$from:$lnum: \`pub fn $name\` has no \`pub fn $name\` in $to: every platform function needs both sides (docs/PLATFORMS.md)"
                found=1
            fi
        done < <(pub_fns "$root/$from")
    done
    return $found
}

# Rule 3 on the tree at $1: the body of each `pub fn` in mod.rs (from its
# line to the line where its braces balance) must call `imp::<name>`.
check_delegation() {
    local root=$1 file=src/platform/mod.rs
    (cd "$root" && code_parts "$file") | awk -F: -v file="$file" '
    function report() {
        if (!called) {
            print file ":" start ": `pub fn " name "` does not delegate to `imp::" name "`: mod.rs only forwards to src/platform/{linux,macos}.rs"
            bad = 1
        }
    }
    {
        code = $0; sub(/^[^:]*:[0-9]+:/, "", code)
        if (!inside && match(code, /^[ \t]*pub[ \t]+((async|unsafe|const)[ \t]+)*fn[ \t]+[A-Za-z_][A-Za-z0-9_]*/)) {
            head = substr(code, RSTART, RLENGTH); sub(/.*fn[ \t]+/, "", head)
            name = head; start = $2; inside = 1; depth = 0; opened = 0; called = 0
        }
        if (!inside) next
        if (index(code, "imp::" name "(")) called = 1
        t = code
        depth += gsub(/\{/, "", t); o = depth
        t = code; depth -= gsub(/\}/, "", t)
        if (o > 0) opened = 1
        if (opened && depth <= 0) { report(); inside = 0 }
        else if (!opened && code ~ /;[ \t]*$/) { report(); inside = 0 }
    }
    END { exit bad }'
}

check() {
    local root=$1 status=0
    check_apis "$root" || status=1
    check_parity "$root" || status=1
    check_delegation "$root" || status=1
    if [ $status -ne 0 ]; then
        echo "check-platform: FAILED (rules at the top of .ci/check-platform.sh)"
    else
        echo "check-platform: ok (no Linux-only API outside src/platform/linux.rs; linux.rs and macos.rs define the same pub fns; mod.rs delegates)"
    fi
    return $status
}

# A copy of src/platform/ and the files the cases edit, changed by `edit`
# (run in the copy), then checked. Prints the output on a mismatch.
expect() {
    local want=$1 what=$2 edit=$3 needle=${4:-} tmp out rc=0
    tmp=$(mktemp -d)
    mkdir -p "$tmp/src"
    cp -R "$ROOT/src/." "$tmp/src/"
    (cd "$tmp" && eval "$edit")
    out=$("$SELF" --root "$tmp" 2>&1) || rc=$?
    rm -rf "$tmp"
    if { [ "$want" = fail ] && [ $rc -eq 1 ] && [[ "$out" == *"$needle"* ]]; } ||
        { [ "$want" = pass ] && [ $rc -eq 0 ]; }; then
        echo "self-test ok: $what ($want)"
        return 0
    fi
    echo "self-test FAILED: $what: wanted $want${needle:+ naming \"$needle\"}, got exit $rc:"
    printf '%s\n' "$out" | sed 's/^/    /'
    return 1
}

self_test() {
    local status=0 n
    n=$(($(wc -l <"$ROOT/src/lib.rs") + 1))
    expect pass "the tree as it is" ":" || status=1
    expect fail "a stray /proc/ use" \
        "echo 'pub fn stray() -> bool { std::path::Path::new(\"/proc/self\").exists() }' >>src/lib.rs" \
        "src/lib.rs:$n: Linux-only API \`/proc/\`" || status=1
    expect fail "a prctl call after a string holding //" \
        "echo 'pub fn s() { let _u = \"http://x\"; rustix::process::prctl(); }' >>src/lib.rs" \
        "src/lib.rs:$n: Linux-only API \`prctl\`" || status=1
    expect pass "comments that name the APIs" \
        "printf '%s\n' '/// reads /proc/ (proc(5))' '// SO_PEERCRED on Linux' 'pub fn c() {} // not inotify' '/* epoll' '   pidfd */' >>src/lib.rs" || status=1
    expect fail "a platform function without its macOS side" \
        "echo 'pub fn only_linux() {}' >>src/platform/linux.rs" \
        "src/platform/linux.rs:" || status=1
    expect fail "a platform function without its Linux side" \
        "echo 'pub fn only_macos() {}' >>src/platform/macos.rs" \
        "\`pub fn only_macos\` has no \`pub fn only_macos\` in src/platform/linux.rs" || status=1
    expect fail "a mod.rs function that does not delegate" \
        "printf '%s\n' 'pub fn local() -> bool {' '    true' '}' >>src/platform/mod.rs" \
        "\`pub fn local\` does not delegate" || status=1
    if [ $status -eq 0 ]; then echo "check-platform self-test: ok"; fi
    return $status
}

case "${1:-}" in
    --self-test) self_test ;;
    --root) check "$(cd "${2:?--root needs a directory}" && pwd -P)" ;;
    "") check "$ROOT" ;;
    *)
        echo "usage: $0 [--root DIR | --self-test]" >&2
        exit 2
        ;;
esac
