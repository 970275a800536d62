#!/usr/bin/env bash
# The fleet tier on one machine: three fetchfs daemons (separate cache dirs)
# share one redis-server; one local nginx is the origin.
#
#   benches/fleet.sh            (as root; needs nginx and redis-server)
#
# Rows, each a cold read of a 256 MiB file (MB/s = 10^6 bytes per second):
#   curl            curl from nginx: the limit
#   first host      host A reads it: from the origin, publishing it
#   fleet host      hosts B and C read it: from Redis
# then the ratios fleet/curl and fleet/first, and the origin GETs per URL:
# for the file above, and for a second file the three hosts open at once
# (one GET expected: one host leads, the others wait and fill from Redis).
#
# Environment:
#   BENCH_DIR    where the data and caches go (default: /var/tmp; not a tmpfs)
#   FETCHFS_BIN  use this fetchfs binary instead of building the release one
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$repo_root"
use_cargo_target_dir

readonly FILE_BYTES=$((256 * 1024 * 1024))
readonly HOSTS="a b c"

work_dir=""
nginx_pid=""
redis_pid=""
declare -A mount_pids=()

log() { printf '%s\n' "$*" >&2; }

cleanup() {
    local status=$?
    set +e
    local host
    for host in $HOSTS; do
        unmount_and_stop "${mount_pids[$host]:-}" "$work_dir/$host/mnt" 15
    done
    [[ -n "$nginx_pid" ]] && kill -QUIT "$nginx_pid" 2>/dev/null && wait_for_exit "$nginx_pid" 10
    [[ -n "$redis_pid" ]] && kill "$redis_pid" 2>/dev/null && wait_for_exit "$redis_pid" 10
    [[ -n "$work_dir" ]] && rm -rf "$work_dir"
    exit "$status"
}
exit_traps cleanup

scripts/install-deps.sh bench >&2
command -v redis-server >/dev/null || scripts/install-deps.sh test >&2
fetchfs=${FETCHFS_BIN:-}
if [[ -z "$fetchfs" ]]; then
    cargo build --release >&2
    fetchfs="$CARGO_TARGET_DIR/release/fetchfs"
fi
work_dir=$(mktemp -d "${BENCH_DIR:-/var/tmp}/fetchfs-fleet.XXXXXX")
mkdir -p "$work_dir/data" "$work_dir/nginx/tmp"
head -c "$FILE_BYTES" /dev/urandom >"$work_dir/data/model.bin"
head -c "$FILE_BYTES" /dev/urandom >"$work_dir/data/together.bin"

port=$(free_port)
cat >"$work_dir/nginx/nginx.conf" <<EOF
user root;
worker_processes auto;
daemon off;
pid $work_dir/nginx/nginx.pid;
error_log $work_dir/nginx/error.log warn;
events { worker_connections 1024; }
http {
    log_format requests '\$request_method \$uri \$status \$http_user_agent';
    access_log $work_dir/nginx/access.log requests;
    sendfile on;
    client_body_temp_path $work_dir/nginx/tmp/client;
    proxy_temp_path $work_dir/nginx/tmp/proxy;
    fastcgi_temp_path $work_dir/nginx/tmp/fastcgi;
    uwsgi_temp_path $work_dir/nginx/tmp/uwsgi;
    scgi_temp_path $work_dir/nginx/tmp/scgi;
    server { listen 127.0.0.1:$port; root $work_dir/data; expires 1h; }
}
EOF
nginx -p "$work_dir/nginx" -e "$work_dir/nginx/error.log" -c "$work_dir/nginx/nginx.conf" &
nginx_pid=$!
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --maxmemory 2gb --maxmemory-policy allkeys-lru --dir "$work_dir" >"$work_dir/redis.log" 2>&1 &
redis_pid=$!
sleep 0.5
cat >"$work_dir/fleet.toml" <<EOF
[shared]
url = "redis://127.0.0.1:$redis_port"
[origins.o]
url = "http://127.0.0.1:$port/"
EOF
for host in $HOSTS; do
    mkdir -p "$work_dir/$host/mnt"
    "$fetchfs" mount "$work_dir/$host/mnt" --config "$work_dir/fleet.toml" \
        --cache-dir "$work_dir/$host/cache" >"$work_dir/$host/log" 2>&1 &
    mount_pids[$host]=$!
    wait_for_fuse_mount "$work_dir/$host/mnt" "${mount_pids[$host]}" "$work_dir/$host/log" 60 "fetchfs $host"
done
cat "$work_dir/data/"*.bin >/dev/null

# rate COMMAND...: MB/s of reading FILE_BYTES with COMMAND.
rate() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    awk -v b="$FILE_BYTES" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", b * 1e3 / ns }'
}
# The GETs fetchfs sent for /NAME (curl's, for the limit, not counted).
gets_of() { grep -c "^GET /$1 200 fetchfs/" "$work_dir/nginx/access.log" || true; }
stat_of() { sed -n "s/^ *\"$2\": \\([0-9]*\\),\$/\\1/p" "$work_dir/$1/mnt/.fetchfs/stats"; }

curl_rate=$(rate curl -s "http://127.0.0.1:$port/model.bin")
first_rate=$(rate cat "$work_dir/a/mnt/o/model.bin")
for _ in $(seq 100); do
    [[ "$(stat_of a shared_publishes)" -ge 1 ]] && break
    sleep 0.1
done
fleet_b=$(rate cat "$work_dir/b/mnt/o/model.bin")
fleet_c=$(rate cat "$work_dir/c/mnt/o/model.bin")
for host in b c; do
    cmp "$work_dir/data/model.bin" "$work_dir/$host/mnt/o/model.bin"
done
readers=()
for host in $HOSTS; do
    cat "$work_dir/$host/mnt/o/together.bin" >/dev/null &
    readers+=($!)
done
wait "${readers[@]}"
sleep 1

printf '\n%-34s %10s\n' "cold read of 256 MiB" "MB/s"
printf '%-34s %10s\n' "curl (the limit)" "$curl_rate" \
    "first host (from the origin)" "$first_rate" \
    "second host (from the fleet)" "$fleet_b" \
    "third host (from the fleet)" "$fleet_c"
printf '%-34s %10s\n' "fleet / curl" "$(awk -v f="$fleet_b" -v c="$curl_rate" 'BEGIN { printf "%.2f", f / c }')" \
    "fleet / first host" "$(awk -v f="$fleet_b" -v c="$first_rate" 'BEGIN { printf "%.2f", f / c }')"
printf '%-34s %10s\n' "origin GETs, read in turn" "$(gets_of model.bin)" \
    "origin GETs, opened at once" "$(gets_of together.bin)"
printf '%-34s %10s\n' "Redis memory for 512 MiB of bodies" \
    "$(redis-cli -p "$redis_port" info memory | sed -n 's/^used_memory_human:\(.*\)\r$/\1/p')"
