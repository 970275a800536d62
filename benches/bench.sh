#!/usr/bin/env bash
# fetchfs against its peers, on one machine, from one local nginx origin.
#
#   benches/bench.sh            (as root; benches/README.md explains the numbers)
#
# Generates a 1 GiB random file, another one (read at 1,000 random offsets),
# two of 64 MiB (one read by 64 readers at once) and 200 random 1 MiB files,
# serves them with
# nginx on 127.0.0.1, and reads them with curl, straight from disk, through
# fetchfs, through `httpdirfs --cache` and through `rclone mount
# --vfs-cache-mode full`. Prints MB/s (10^6 bytes per second) and the ratios
# fetchfs/peer. Every mount is undone and nginx stopped on exit.
#
# Environment:
#   BENCH_SYSTEMS   which columns to run (default: "curl disk fetchfs httpdirfs rclone")
#   BENCH_DIR       where the data and caches go (default: /var/tmp; not a tmpfs)
#   FETCHFS_BIN     use this fetchfs binary instead of building the release one
#   CARGO_TARGET_DIR  default ~/.cache/fetchfs-target
#   BENCH_READ_TIMEOUT  seconds one measurement may take before it counts as failed (default 300)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$repo_root"
use_cargo_target_dir

readonly SYSTEMS="${BENCH_SYSTEMS:-curl disk fetchfs httpdirfs rclone}"
readonly READ_TIMEOUT_S="${BENCH_READ_TIMEOUT:-300}"
readonly BIG_FILE_BYTES=$((1024 * 1024 * 1024))
readonly SMALL_FILE_BYTES=$((1024 * 1024))
readonly SMALL_FILE_COUNT=200
readonly SMALL_TOTAL_BYTES=$((SMALL_FILE_BYTES * SMALL_FILE_COUNT))
readonly SHARED_FILE_BYTES=$((64 * 1024 * 1024))
readonly SHARED_READERS=64
readonly RANDOM_READS=1000
readonly RANDOM_READ_BYTES=4096
readonly MOUNT_WAIT_S=60
readonly STOP_WAIT_S=15
readonly FETCHFS_ORIGIN=bench

work_dir=""
nginx_pid=""
mount_pid=""
mnt=""
mount_root=""
port=""
drop_caches_works=yes
declare -A result=()
declare -a small_names=()

log() { printf '%s\n' "$*" >&2; }

runs() { [[ " $SYSTEMS " == *" $1 "* ]]; }

# SIGTERM first (each of the three unmounts on it), lazy unmount as the fallback.
stop_mount() {
    unmount_and_stop "$mount_pid" "$mnt" "$STOP_WAIT_S"
    mount_pid=""
    mnt=""
}

cleanup() {
    local status=$?
    set +e
    stop_mount
    if [[ -n "$nginx_pid" ]]; then
        kill -QUIT "$nginx_pid" 2>/dev/null
        wait_for_exit "$nginx_pid" 10 || kill -KILL "$nginx_pid" 2>/dev/null
    fi
    if [[ -n "$work_dir" ]]; then
        rm -rf "$work_dir"
    fi
    exit "$status"
}
exit_traps cleanup

drop_caches() {
    sync
    if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        drop_caches_works=no
    fi
}

# The origin serves from the page cache in every cold measurement, so that
# "cold" measures the client, not nginx's disk.
warm_origin() {
    cat "$work_dir/data/big.bin" "$work_dir/data/random.bin" "$work_dir/data/shared.bin" \
        "$work_dir/data/one.bin" "${small_names[@]/#/$work_dir/data/small/}" >/dev/null
}

# measure KEY BYTES COMMAND...: runs COMMAND with stdout to /dev/null and
# stores its rate in result[KEY], or "fail".
measure() {
    local key=$1 bytes=$2 t0 t1
    shift 2
    sync
    t0=$(date +%s%N)
    if timeout -k 10 "$READ_TIMEOUT_S" "$@" >/dev/null; then
        t1=$(date +%s%N)
        result[$key]=$(awk -v b="$bytes" -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", b * 1e3 / ns }')
    else
        result[$key]=fail
    fi
    printf '  %-22s %10s MB/s\n' "$key" "${result[$key]}"
}

generate_data() {
    local data="$work_dir/data"
    mkdir -p "$data/small"
    log "bench: generating 2 x 1 GiB, 2 x 64 MiB and ${SMALL_FILE_COUNT} x 1 MiB of random data in $data"
    head -c "$BIG_FILE_BYTES" /dev/urandom >"$data/big.bin"
    head -c "$BIG_FILE_BYTES" /dev/urandom >"$data/random.bin"
    head -c "$SHARED_FILE_BYTES" /dev/urandom >"$data/shared.bin"
    head -c "$SHARED_FILE_BYTES" /dev/urandom >"$data/one.bin"
    head -c "$SMALL_TOTAL_BYTES" /dev/urandom |
        split -b "$SMALL_FILE_BYTES" -d -a 3 --additional-suffix=.bin - "$data/small/f"
    mapfile -t small_names < <(cd "$data/small" && ls)
    if [[ ${#small_names[@]} -ne $SMALL_FILE_COUNT ]]; then
        log "bench: expected $SMALL_FILE_COUNT small files, made ${#small_names[@]}"
        return 1
    fi
}

start_nginx() {
    local dir="$work_dir/nginx"
    mkdir -p "$dir/tmp"
    port=$(free_port)
    cat >"$dir/nginx.conf" <<EOF
user root;
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    log_format body_bytes '\$body_bytes_sent';
    access_log $dir/access.log body_bytes;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path $dir/tmp/client;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        root $work_dir/data;
        autoindex on;
        # One hour of freshness: warm reads measure the cache, not revalidation.
        expires 1h;
    }
}
EOF
    nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
    nginx_pid=$!
    for _ in $(seq 100); do
        if curl -fs -o /dev/null "http://127.0.0.1:$port/small/"; then
            log "bench: nginx $(nginx -v 2>&1 | sed 's/.*\///') on http://127.0.0.1:$port/"
            return 0
        fi
        kill -0 "$nginx_pid" 2>/dev/null || break
        sleep 0.1
    done
    log "bench: nginx did not start; its error log:"
    cat "$dir/error.log" >&2
    return 1
}

fetchfs_binary() {
    if [[ -n "${FETCHFS_BIN:-}" ]]; then
        echo "$FETCHFS_BIN"
        return 0
    fi
    local bin="$CARGO_TARGET_DIR/release/fetchfs"
    log "bench: cargo build --release (the first build compiles RocksDB: ~15 min)"
    if ! cargo build --release >&2; then
        if [[ -x "$bin" ]]; then
            log "bench: the build failed; benchmarking the existing $bin"
        else
            log "bench: the build failed and there is no $bin"
            return 1
        fi
    fi
    echo "$bin"
}

# wait_for_mount NAME LOG: waits for $mnt to show in /proc/mounts while
# $mount_pid lives.
wait_for_mount() {
    local name=$1 log_file=$2 status=0
    wait_for_fuse_mount "$mnt" "$mount_pid" "$log_file" "$MOUNT_WAIT_S" "$name" || status=$?
    if ((status == 2)); then
        mount_pid=""
    fi
    ((status == 0))
}

# mount_system NAME: mounts NAME on a fresh mountpoint with a fresh cache and
# sets mount_root to the directory in which the origin's root appears.
mount_system() {
    local name=$1 url="http://127.0.0.1:$port/" state="$work_dir/$1"
    mnt="$state/mnt"
    mkdir -p "$mnt" "$state/cache"
    case "$name" in
    fetchfs)
        "$fetchfs_bin" mount "$mnt" --origin "$FETCHFS_ORIGIN=http://127.0.0.1:$port" \
            --cache-dir "$state/cache" >"$state/log" 2>&1 &
        mount_root="$mnt/$FETCHFS_ORIGIN"
        ;;
    httpdirfs)
        # --no-range-check: 1.2.5 wrongly reports that nginx has no range support
        # (httpdirfs issue #188) and then crashes on the first read.
        httpdirfs --cache --no-range-check --cache-location "$state/cache" \
            -f "$url" "$mnt" >"$state/log" 2>&1 &
        mount_root="$mnt"
        ;;
    rclone)
        : >"$state/rclone.conf"
        rclone mount :http: "$mnt" --http-url "$url" --vfs-cache-mode full \
            --cache-dir "$state/cache" --config "$state/rclone.conf" --read-only \
            >"$state/log" 2>&1 &
        mount_root="$mnt"
        ;;
    esac
    mount_pid=$!
    wait_for_mount "$name" "$state/log"
}

# Same bytes as the origin's files, or the numbers mean nothing.
verify_content() {
    local name=$1 root=$2 f
    # cmp says why on failure: "differ: byte N" or the read error.
    for f in big.bin shared.bin one.bin; do
        if ! cmp "$root/$f" "$work_dir/data/$f" >&2; then
            log "bench: $name: $f read through the mount is not the origin's file"
            return 1
        fi
    done
    for f in "${small_names[@]}"; do
        if ! cmp "$root/small/$f" "$work_dir/data/small/$f" >&2; then
            log "bench: $name: small/$f read through the mount is not the origin's file"
            return 1
        fi
    done
    log "bench: $name: content verified"
}

# Body bytes nginx has sent so far (%.0f: mawk's %d stops at 2^31).
origin_bytes() {
    awk '{ sum += $1 } END { printf "%.0f", sum }' "$work_dir/nginx/access.log"
}

# `perl -e "$RANDOM_READER" FILE N LEN`: N reads of LEN bytes at page-aligned
# offsets spread over FILE, the same offsets every run (perl-base is part of
# every Debian system).
# shellcheck disable=SC2016 # perl's variables
readonly RANDOM_READER='my ($path, $n, $len) = @ARGV;
    open(my $f, "<", $path) or die "$path: $!";
    my $pages = int((-s $f) / 4096) - 1;
    srand(7);
    for (1 .. $n) {
        sysseek($f, int(rand($pages)) * 4096, 0) or die "seek: $!";
        my $got = sysread($f, my $buf, $len);
        die "read: $!" unless defined $got && $got == $len;
    }'

# measure_random KEY FILE: times RANDOM_READS random reads of FILE, and
# stores reads per second in result[KEY] and the origin's bytes for them in
# result[KEY_bytes] (reads of the disk send nothing).
measure_random() {
    local key=$1 file=$2 before t0 t1
    before=$(origin_bytes)
    t0=$(date +%s%N)
    if timeout -k 10 "$READ_TIMEOUT_S" perl -e "$RANDOM_READER" "$file" \
        "$RANDOM_READS" "$RANDOM_READ_BYTES"; then
        t1=$(date +%s%N)
        result[$key]=$(awk -v n="$RANDOM_READS" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", n * 1e9 / ns }')
    else
        result[$key]=fail
    fi
    # nginx logs a request when it ends; a connection the client closed
    # early ends at once.
    sleep 1
    result[${key}_bytes]=$(($(origin_bytes) - before))
    printf '  %-22s %10s reads/s, %s bytes from the origin\n' "$key" "${result[$key]}" \
        "${result[${key}_bytes]}"
}

# `bash -c "$READERS" _ FILE N`: N `cat`s of FILE at once; fails if any of
# them fails. A script, not a function, so that `timeout` can run it.
# shellcheck disable=SC2016 # expanded by the inner bash
readonly READERS='pids=()
    for ((i = 0; i < $2; i++)); do cat "$1" >/dev/null & pids+=($!); done
    status=0
    for pid in "${pids[@]}"; do wait "$pid" || status=1; done
    exit "$status"'

bench_mount() {
    local name=$1 root
    echo "$name:"
    if ! mount_system "$name"; then
        local row
        for row in random_cold big_cold big_warm big_dropped small_cold small_warm small_dropped one_cold shared_cold; do
            result[$name.$row]=fail
        done
        stop_mount
        return 0
    fi
    root=$mount_root
    local small=("${small_names[@]/#/$root/small/}")

    warm_origin
    # A file of its own: the peers fetch far more than the reads need, and
    # would warm big.bin for its cold read.
    measure_random "$name.random_cold" "$root/random.bin"
    measure "$name.big_cold" "$BIG_FILE_BYTES" cat "$root/big.bin"
    measure "$name.big_warm" "$BIG_FILE_BYTES" cat "$root/big.bin"
    drop_caches
    measure "$name.big_dropped" "$BIG_FILE_BYTES" cat "$root/big.bin"
    warm_origin
    measure "$name.small_cold" "$SMALL_TOTAL_BYTES" cat "${small[@]}"
    measure "$name.small_warm" "$SMALL_TOTAL_BYTES" cat "${small[@]}"
    drop_caches
    measure "$name.small_dropped" "$SMALL_TOTAL_BYTES" cat "${small[@]}"
    # Each reader's rate: 64 readers that share one download read at the
    # speed of one (one_cold: one reader of another file of that size).
    warm_origin
    measure "$name.one_cold" "$SHARED_FILE_BYTES" cat "$root/one.bin"
    measure "$name.shared_cold" "$SHARED_FILE_BYTES" bash -c "$READERS" _ \
        "$root/shared.bin" "$SHARED_READERS"
    verify_content "$name" "$root" || result[$name.verified]=no

    if [[ "$name" == fetchfs ]]; then
        "$fetchfs_bin" stats "$mnt" || true
    fi
    stop_mount
}

bench_curl() {
    local base="http://127.0.0.1:$port"
    echo "curl:"
    warm_origin
    measure curl.big_cold "$BIG_FILE_BYTES" curl -sf -o /dev/null "$base/big.bin"
    # One process, one kept-alive connection, files one after another, like `cat`.
    measure curl.small_cold "$SMALL_TOTAL_BYTES" curl -sf "${small_names[@]/#/$base/small/}"
    measure curl.one_cold "$SHARED_FILE_BYTES" curl -sf -o /dev/null "$base/one.bin"
}

bench_disk() {
    local data="$work_dir/data"
    local small=("${small_names[@]/#/$data/small/}")
    echo "disk:"
    drop_caches
    measure disk.big_dropped "$BIG_FILE_BYTES" cat "$data/big.bin"
    measure disk.big_warm "$BIG_FILE_BYTES" cat "$data/big.bin"
    drop_caches
    measure disk.small_dropped "$SMALL_TOTAL_BYTES" cat "${small[@]}"
    measure disk.small_warm "$SMALL_TOTAL_BYTES" cat "${small[@]}"
    measure disk.one_cold "$SHARED_FILE_BYTES" cat "$data/one.bin"
    # The same 64 readers of a local file in the page cache: what two cores
    # allow for 64 copies of 64 MiB, whatever the filesystem.
    cat "$data/shared.bin" >/dev/null
    measure disk.shared_cold "$SHARED_FILE_BYTES" bash -c "$READERS" _ \
        "$data/shared.bin" "$SHARED_READERS"
    drop_caches
    measure_random disk.random_cold "$data/random.bin"
}

# ratio A B: A/B to two decimals, or "-" when either is missing or failed.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else printf "-"
    }'
}

print_table() {
    local row label curl disk f h r name
    local rows=(big_cold big_warm big_dropped small_cold small_warm small_dropped one_cold shared_cold)
    declare -A labels=(
        [big_cold]="1 GiB, cold"
        [big_warm]="1 GiB, warm"
        [big_dropped]="1 GiB, warm, caches dropped"
        [small_cold]="200 x 1 MiB, cold"
        [small_warm]="200 x 1 MiB, warm"
        [small_dropped]="200 x 1 MiB, warm, dropped"
        [one_cold]="1 reader, 64 MiB, cold"
        [shared_cold]="64 readers, 64 MiB, cold"
    )
    echo
    echo "MB/s (10^6 bytes/s); ratios are fetchfs / peer, higher is better for fetchfs"
    printf '%-28s %9s %9s %9s %9s %9s | %7s %7s %9s %7s\n' \
        "" curl disk fetchfs httpdirfs rclone f/curl f/disk f/httpdirfs f/rclone
    for row in "${rows[@]}"; do
        label=${labels[$row]}
        curl=${result[curl.$row]:--}
        disk=${result[disk.$row]:--}
        f=${result[fetchfs.$row]:--}
        h=${result[httpdirfs.$row]:--}
        r=${result[rclone.$row]:--}
        printf '%-28s %9s %9s %9s %9s %9s | %7s %7s %9s %7s\n' "$label" \
            "$curl" "$disk" "$f" "$h" "$r" \
            "$(ratio "$f" "$curl")" "$(ratio "$f" "$disk")" "$(ratio "$f" "$h")" "$(ratio "$f" "$r")"
    done
    echo
    echo "cold: first read through a fresh mount and empty cache (the origin serves from RAM);"
    echo "warm: second read; dropped: after sync + echo 3 > /proc/sys/vm/drop_caches."
    echo "curl's cold rows are plain downloads; disk's rows read the origin's own files."
    echo "64 readers: each reader's rate, 64 reading one uncached file at once; compare"
    echo "with '1 reader' of the same system (fetchfs's stats above count its origin requests)"
    echo "and with disk's 64 readers of the local file (the machine's limit for 64 copies)."
    echo "64 readers / 1 reader, fetchfs: $(ratio "${result[fetchfs.shared_cold]:-}" "${result[fetchfs.one_cold]:-}")"
    echo
    echo "$RANDOM_READS random reads of $RANDOM_READ_BYTES bytes of the uncached 1 GiB file"
    echo "(disk: the origin's file, page cache dropped):"
    printf '%-10s %9s %16s %18s\n' "" reads/s "origin MB" "origin/read bytes"
    for name in disk fetchfs httpdirfs rclone; do
        local rate=${result[$name.random_cold]:--} sent=${result[$name.random_cold_bytes]:-}
        [[ "$rate" == - ]] && continue
        printf '%-10s %9s %16s %18s\n' "$name" "$rate" \
            "$(awk -v b="$sent" 'BEGIN { printf "%.1f", b / 1e6 }')" \
            "$(ratio "$sent" "$((RANDOM_READS * RANDOM_READ_BYTES))")"
    done
    if [[ "$drop_caches_works" == no ]]; then
        echo "NOTE: drop_caches was not permitted here, so the 'dropped' rows read from the page cache."
    fi
    for name in fetchfs httpdirfs rclone; do
        if [[ "${result[$name.verified]:-}" == no ]]; then
            echo "WARNING: $name returned wrong bytes or read errors; its numbers are meaningless."
        fi
    done
}

main() {
    if [[ $(id -u) -ne 0 ]]; then
        log "bench: run as root (it mounts filesystems and drops the page cache)"
        return 1
    fi
    local started_ns
    started_ns=$(date +%s%N)
    local groups=(bench)
    if runs fetchfs && [[ -z "${FETCHFS_BIN:-}" ]]; then
        groups+=(build)
    fi
    scripts/install-deps.sh "${groups[@]}"
    if runs fetchfs; then
        fetchfs_bin=$(fetchfs_binary)
    fi

    work_dir=$(mktemp -d "${BENCH_DIR:-/var/tmp}/fetchfs-bench.XXXXXX")
    generate_data
    start_nginx
    log "bench: $(nproc) cores, kernel $(uname -r), $(httpdirfs --version 2>&1 | head -1), $(rclone version | head -1)"

    local name
    for name in curl disk; do
        if runs "$name"; then
            "bench_$name"
        fi
    done
    for name in fetchfs httpdirfs rclone; do
        if runs "$name"; then
            bench_mount "$name"
        fi
    done

    print_table
    log "bench: done in $((($(date +%s%N) - started_ns) / 1000000000)) s"
}

fetchfs_bin=""
main "$@"
