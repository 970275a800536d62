# Shell helpers shared by scripts/demo.sh, scripts/test.sh and benches/bench.sh.
# Sourced, never run:
#
#   # shellcheck source-path=SCRIPTDIR source=lib.sh
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sourcing only defines things: it sets $repo_root and $script_name and changes
# no option, directory, trap or environment variable.
# shellcheck shell=bash

# The clone this file belongs to.
# shellcheck disable=SC2034 # used by the scripts that source this file.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The prefix of this script's messages: "demo", "bench", "test".
script_name="$(basename "$0" .sh)"

# Build output goes to $CARGO_TARGET_DIR, by default ~/.cache/fetchfs-target, so
# that the RocksDB build is paid once per machine, not once per clone; cargo is
# found in ~/.cargo/bin when it is not on PATH.
use_cargo_target_dir() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fetchfs-target}"
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
}

# exit_traps FUNC: runs FUNC on exit, and turns SIGINT and SIGTERM into an exit
# (status 130, 143) so that FUNC runs for them too. FUNC sees the exit status in $?.
exit_traps() {
    # shellcheck disable=SC2064 # FUNC is meant to be expanded now.
    trap "$1" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# is_mounted DIR: whether a FUSE filesystem is mounted on DIR.
is_mounted() {
    awk -v m="$1" '$2 == m && $3 ~ /^fuse/ { found = 1 } END { exit !found }' /proc/mounts
}

# wait_for_exit PID SECONDS: waits up to SECONDS for PID to exit and reaps it;
# returns 1 if it is still running.
wait_for_exit() {
    local pid=$1 deciseconds=$(($2 * 10))
    while kill -0 "$pid" 2>/dev/null; do
        ((deciseconds-- > 0)) || return 1
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
}

# free_port: prints a port on 127.0.0.1 nothing listens on (connecting to it is
# refused).
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "$script_name: no free port found" >&2
    return 1
}

# wait_for_fuse_mount MNT PID LOG SECONDS NAME: waits up to SECONDS for a FUSE
# mount on MNT while PID, a child of this shell, runs. Returns 0 once MNT is
# mounted. Otherwise prints why and the log file LOG of NAME (the program PID
# runs) to stderr, and returns 2 if PID exited first (it is reaped: the caller
# should forget it), or 1 on timeout.
wait_for_fuse_mount() {
    local mnt=$1 pid=$2 log_file=$3 seconds=$4 name=$5 status
    for _ in $(seq $((seconds * 10))); do
        if is_mounted "$mnt"; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" && status=0 || status=$?
            echo "$script_name: $name exited with status $status before mounting; its log:" >&2
            cat "$log_file" >&2
            return 2
        fi
        sleep 0.1
    done
    echo "$script_name: $name did not mount within ${seconds}s; its log:" >&2
    cat "$log_file" >&2
    return 1
}

# unmount_and_stop PID MNT SECONDS: stops the FUSE daemon PID (a child of this
# shell) and makes sure nothing stays mounted on MNT. SIGTERM first (the daemon
# unmounts on it), and SECONDS to exit; then a lazy unmount if MNT is still
# mounted, and SIGKILL if PID is still running. Either argument may be empty.
# Never fails.
unmount_and_stop() {
    local pid=$1 mnt=$2 seconds=$3
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" || true
        if ! wait_for_exit "$pid" "$seconds"; then
            echo "$script_name: pid $pid ignored SIGTERM" >&2
        fi
    fi
    if [[ -n "$mnt" ]] && is_mounted "$mnt"; then
        umount -l "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" || true
    fi
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" || true
        wait "$pid" 2>/dev/null || true
    fi
}
