#!/usr/bin/env bash
# The full check, as CI runs it: install what is missing, then
# `cargo fmt --check`, `cargo clippy --all-targets -- -D warnings`, `cargo test`.
#
# The integration tests mount real FUSE filesystems, so run this as root (or
# with /dev/fuse usable and fusermount3 installed). Build artifacts go to
# $CARGO_TARGET_DIR, by default ~/.cache/fetchfs-target, so that the ~15 minute
# RocksDB build is paid once per machine, not once per clone.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fetchfs-target}"
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
mkdir -p "$CARGO_TARGET_DIR"

scripts/install-deps.sh build test

step() {
    echo
    echo "==> $*"
    "$@"
}

step cargo fmt --check
step cargo clippy --all-targets -- -D warnings
step cargo test
