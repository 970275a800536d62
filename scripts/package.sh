#!/usr/bin/env bash
# Builds the Debian package, and prints its path:
#
#   scripts/package.sh        -> $CARGO_TARGET_DIR/debian/fetchfs_VERSION-1_ARCH.deb
#
# It holds the release binary (/usr/bin/fetchfs, and /usr/sbin/mount.fetchfs
# beside it for /etc/fstab), man pages for every command and for the helper,
# bash, zsh and fish completions, the systemd units, the sample config and the
# docs (see [package.metadata.deb] in Cargo.toml). The man pages and
# completions come from the binary itself (`fetchfs manpages`, `fetchfs
# completions`), so they match its command line.
#
# The release profile compiles RocksDB once more (about 15 minutes on 2 cores,
# the first time). cargo-deb is installed into ~/.cache/fetchfs-tools when it
# is missing.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo_root"
use_cargo_target_dir

scripts/install-deps.sh build package >&2

tools="$HOME/.cache/fetchfs-tools"
export PATH="$tools/bin:$PATH"
if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "$script_name: installing cargo-deb into $tools" >&2
    cargo install cargo-deb --version 3.8.0 --locked --root "$tools" >&2
fi

cargo build --release --locked >&2
assets="$CARGO_TARGET_DIR/release/package"
rm -rf "$assets"
mkdir -p "$assets/completions"
fetchfs="$CARGO_TARGET_DIR/release/fetchfs"
"$fetchfs" manpages "$assets/man"
gzip -9n "$assets"/man/*
"$fetchfs" completions bash >"$assets/completions/fetchfs.bash"
"$fetchfs" completions zsh >"$assets/completions/_fetchfs"
"$fetchfs" completions fish >"$assets/completions/fetchfs.fish"

mkdir -p "$CARGO_TARGET_DIR/debian"
# The release profile keeps debug info for benchmarks (500 MB); the package
# ships the binary stripped.
cargo deb --no-build --locked --strip --output "$CARGO_TARGET_DIR/debian/" | tail -n 1
