#!/usr/bin/env bash
# The full check, as CI runs it: install what is missing, then
# `cargo fmt --check`, `cargo clippy --all-targets -- -D warnings`, `cargo test`,
# then the Debian package: built, installed, mounted from an fstab line, read,
# unmounted and removed (scripts/test-package.sh).
#
# The integration tests mount real FUSE filesystems, so run this as root (or
# with /dev/fuse usable and fusermount3 installed). Build artifacts go to
# $CARGO_TARGET_DIR, by default ~/.cache/fetchfs-target, so that the ~15 minute
# RocksDB build is paid once per machine, not once per clone.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo_root"
use_cargo_target_dir
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
step scripts/test-package.sh
