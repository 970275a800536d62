#!/usr/bin/env bash
# A two-minute tour of fetchfs against a throwaway origin on 127.0.0.1.
#
#   scripts/demo.sh
#
# Installs what is missing, builds fetchfs, serves a generated tree
# with `python3 -m http.server`, mounts it, and shows: the listing, a cold and a
# warm read of a 16 MiB file, two identical files sharing one inode, and the
# stats. Everything it starts is stopped and unmounted on exit, error or not.
# Build artifacts go to $CARGO_TARGET_DIR (default ~/.cache/fetchfs-target);
# FETCHFS_BIN=/path/to/fetchfs skips the build and uses that binary.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo_root"
use_cargo_target_dir

readonly BIG_FILE_BYTES=$((16 * 1024 * 1024))
readonly MOUNT_WAIT_SECONDS=30
readonly STOP_WAIT_SECONDS=10

work_dir=""
origin_pid=""
daemon_pid=""
mnt=""

if [[ -t 1 ]]; then
    say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
    say() { printf '\n==> %s\n' "$*"; }
fi

cleanup() {
    local status=$?
    set +e
    unmount_and_stop "$daemon_pid" "$mnt" "$STOP_WAIT_SECONDS"
    if [[ -n "$origin_pid" ]]; then
        kill "$origin_pid" 2>/dev/null
        wait "$origin_pid" 2>/dev/null
    fi
    if [[ -n "$work_dir" ]]; then
        rm -rf "$work_dir"
    fi
    exit "$status"
}
exit_traps cleanup

# Prints how long `cat FILE` took and the rate, from date +%s%N.
timed_read() {
    local label=$1 file=$2 bytes t0 t1
    bytes=$(stat -c %s "$file")
    t0=$(date +%s%N)
    cat "$file" >/dev/null
    t1=$(date +%s%N)
    awk -v l="$label" -v b="$bytes" -v ns=$((t1 - t0)) \
        'BEGIN { printf "%-28s %8.1f ms  %9.1f MB/s\n", l, ns / 1e6, b * 1e3 / ns }'
}

make_origin_tree() {
    local root=$1
    mkdir -p "$root/docs/guide" "$root/releases/v1.0" "$root/releases/latest"
    echo "Hello from the demo origin." >"$root/hello.txt"
    printf 'fetchfs demo\n============\n\nEvery file here is served by python3 -m http.server.\n' \
        >"$root/README.txt"
    printf 'line %s\n' $(seq 1 1000) >"$root/docs/numbers.txt"
    printf 'Directories come from the origin'\''s HTML listing.\n' >"$root/docs/guide/index.txt"
    head -c "$BIG_FILE_BYTES" /dev/urandom >"$root/big.bin"
    # The same release published under two names: stored once, one inode.
    tar -C "$root/docs" -cf "$root/releases/v1.0/tool.tar" numbers.txt guide
    cp "$root/releases/v1.0/tool.tar" "$root/releases/latest/tool.tar"
}

start_origin() {
    local root=$1 port=$2
    python3 -m http.server --bind 127.0.0.1 "$port" --directory "$root" \
        >"$work_dir/origin.log" 2>&1 &
    origin_pid=$!
    for _ in $(seq 100); do
        if curl -fs -o /dev/null "http://127.0.0.1:$port/hello.txt"; then
            return 0
        fi
        kill -0 "$origin_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "demo: the origin did not start; its log:" >&2
    cat "$work_dir/origin.log" >&2
    return 1
}

start_fetchfs() {
    local bin=$1 port=$2 log="$work_dir/fetchfs.log" status=0
    "$bin" mount "$mnt" --origin "demo=http://127.0.0.1:$port" \
        --cache-dir "$work_dir/cache" >"$log" 2>&1 &
    daemon_pid=$!
    wait_for_fuse_mount "$mnt" "$daemon_pid" "$log" "$MOUNT_WAIT_SECONDS" fetchfs || status=$?
    if ((status == 2)); then
        daemon_pid=""
    fi
    ((status == 0))
}

stop_fetchfs() {
    kill -TERM "$daemon_pid"
    if ! wait_for_exit "$daemon_pid" "$STOP_WAIT_SECONDS"; then
        echo "demo: fetchfs did not exit within ${STOP_WAIT_SECONDS}s of SIGTERM" >&2
        return 1
    fi
    daemon_pid=""
    if is_mounted "$mnt"; then
        echo "demo: fetchfs exited but $mnt is still mounted" >&2
        return 1
    fi
}

main() {
    say "Installing missing packages"
    scripts/install-deps.sh build demo

    local bin="${FETCHFS_BIN:-}"
    if [[ -z "$bin" ]]; then
        # The dev profile, with optimised dependencies: the one profile the
        # tests and clippy use too, so RocksDB is compiled once per machine.
        say "Building fetchfs (the first build compiles RocksDB and takes ~15 min)"
        cargo build
        bin="$CARGO_TARGET_DIR/debug/fetchfs"
    fi

    work_dir=$(mktemp -d "${TMPDIR:-/tmp}/fetchfs-demo.XXXXXX")
    mnt="$work_dir/mnt"
    mkdir -p "$mnt" "$work_dir/origin"
    make_origin_tree "$work_dir/origin"

    local port
    port=$(free_port)
    say "Serving $work_dir/origin at http://127.0.0.1:$port/"
    start_origin "$work_dir/origin" "$port"

    say "fetchfs mount $mnt --origin demo=http://127.0.0.1:$port --cache-dir $work_dir/cache"
    start_fetchfs "$bin" "$port"
    echo "mounted (daemon pid $daemon_pid)"

    local demo="$mnt/demo"
    say "ls -lR $demo   (directories come from the origin's HTML listings)"
    ls -lR "$demo"

    say "Reading big.bin twice: the first read streams from the origin, the second from the cache"
    timed_read "first read (origin)" "$demo/big.bin"
    timed_read "second read (cache)" "$demo/big.bin"
    # cmp says why on failure: "differ: byte N" or the read error.
    if cmp "$demo/big.bin" "$work_dir/origin/big.bin" >&2; then
        echo "big.bin through the mount is byte-identical to the origin's file"
    else
        echo "demo: reading big.bin through the mount did not give the origin's bytes" >&2
        return 1
    fi

    say "Two URLs, one body: releases/v1.0/tool.tar and releases/latest/tool.tar"
    cat "$demo/releases/v1.0/tool.tar" "$demo/releases/latest/tool.tar" >/dev/null
    stat -c '%i %h %n' "$demo/releases/v1.0/tool.tar" "$demo/releases/latest/tool.tar"
    if [[ $(stat -c %i "$demo/releases/v1.0/tool.tar") == $(stat -c %i "$demo/releases/latest/tool.tar") ]]; then
        echo "same inode: the body is stored once, and the link count is the number of paths known to share it"
    else
        echo "demo: the two identical files have different inodes" >&2
        return 1
    fi
    tar -tvf "$demo/releases/latest/tool.tar"

    say "fetchfs stats $mnt"
    "$bin" stats "$mnt"

    say "Unmounting: SIGTERM to the daemon"
    stop_fetchfs
    echo "unmounted cleanly"
}

main "$@"
