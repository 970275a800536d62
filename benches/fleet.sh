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
# (one GET expected: one host leads, the others follow its fetch).
#
# Small files: 2,000 files of 4 KiB, read cold by host A (from the origin)
# and then by host B (from the fleet), in files/s; then host C looks up
# (stat) half of them and opens and reads the other half, from the fleet,
# first alone and then while a 256 MiB fill from the fleet runs on it
# (head-of-line: p50 and p99 of each, target p99 <= 5 ms), and Redis's own
# latency (a PING) alone and while the fill runs.
#
# Takeover: a 256 MiB file nginx sends at 32 MB/s; host A leads its fetch,
# host B follows, and A's daemon is killed with SIGKILL at 40%. Rows: the
# seconds from the kill until B has every byte (bound: the 10 s lease + the
# rest at the origin's pace), and the origin's GETs for it (1 whole and 1
# ranged expected).
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
readonly SMALL_FILES=2000
readonly SLOW_RATE=32m

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
head -c "$FILE_BYTES" /dev/urandom >"$work_dir/data/busy.bin"
mkdir -p "$work_dir/data/small" "$work_dir/data/slow"
head -c "$FILE_BYTES" /dev/urandom >"$work_dir/data/slow/takeover.bin"
for i in $(seq -w 0 $((SMALL_FILES - 1))); do
    head -c 4096 /dev/urandom >"$work_dir/data/small/$i.bin"
done

port=$(free_port)
cat >"$work_dir/nginx/nginx.conf" <<EOF
user root;
worker_processes auto;
daemon off;
pid $work_dir/nginx/nginx.pid;
error_log $work_dir/nginx/error.log warn;
events { worker_connections 1024; }
http {
    log_format requests '\$request_method \$uri \$status \$http_user_agent range=\$http_range';
    access_log $work_dir/nginx/access.log requests;
    sendfile on;
    client_body_temp_path $work_dir/nginx/tmp/client;
    proxy_temp_path $work_dir/nginx/tmp/proxy;
    fastcgi_temp_path $work_dir/nginx/tmp/fastcgi;
    uwsgi_temp_path $work_dir/nginx/tmp/uwsgi;
    scgi_temp_path $work_dir/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$port; root $work_dir/data; expires 1h;
        location /slow/ { limit_rate $SLOW_RATE; }
    }
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
ranged_gets_of() { grep -c "^GET /$1 206 fetchfs/" "$work_dir/nginx/access.log" || true; }
# small_paths HOST [GLOB]: the small files' paths on HOST's mount (the
# origin lists no directory: the names come from the data).
small_paths() {
    local name
    for name in "$work_dir/data/small/"${2:-*}.bin; do
        printf '%s\n' "$work_dir/$1/mnt/o/small/${name##*/}"
    done
}
# files_per_s HOST: files/s of reading every small file on HOST, one by one.
files_per_s() {
    local t0 t1
    t0=$(date +%s%N)
    small_paths "$1" | xargs cat >/dev/null
    t1=$(date +%s%N)
    awk -v n="$SMALL_FILES" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", n * 1e9 / ns }'
}
# redis_ping_latency SECONDS: "p50 p99" in ms of a PING to Redis, sent
# once a millisecond for SECONDS (Redis's own latency, whoever asks).
redis_ping_latency() {
    perl -MIO::Socket::INET -MTime::HiRes=time,sleep -e '
        my ($port, $seconds) = @ARGV;
        my $redis = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port) or die $!;
        $redis->autoflush(1);
        my @ms;
        my $end = time + $seconds;
        while (time < $end) {
            my $t0 = time;
            print $redis "PING\r\n";
            my $answer = <$redis>;
            push @ms, (time - $t0) * 1000;
            sleep 0.001;
        }
        @ms = sort { $a <=> $b } @ms;
        printf "%.2f %.2f\n", $ms[int(@ms * 0.50)], $ms[int(@ms * 0.99)];
    ' "$redis_port" "$1"
}
# latencies HOST GLOB_STAT GLOB_OPEN: "p50 p99 p50 p99" in ms of a stat
# (a lookup: from the fleet's record alone) of each small file named
# GLOB_STAT, and of an open + read (a fill from the fleet, stored on the
# host) of each named GLOB_OPEN, taken in turns.
latencies() {
    paste -d '\n' <(small_paths "$1" "$2") <(small_paths "$1" "$3") | perl -MTime::HiRes=time -e '
        my (@stat, @open);
        while (my $stat = <STDIN>) {
            my $open = <STDIN>;
            chomp($stat, $open);
            my $t0 = time;
            stat($stat) or die "$stat: $!";
            push @stat, (time - $t0) * 1000;
            $t0 = time;
            open(my $f, "<", $open) or die "$open: $!";
            local $/; my $bytes = <$f>; close $f;
            push @open, (time - $t0) * 1000;
        }
        for my $ms (\@stat, \@open) {
            my @sorted = sort { $a <=> $b } @$ms;
            printf "%.2f %.2f ", $sorted[int(@sorted * 0.50)], $sorted[int(@sorted * 0.99)];
        }
        print "\n";
    '
}
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

small_origin=$(files_per_s a)
cat "$work_dir/a/mnt/o/busy.bin" >/dev/null
sleep 2
small_fleet=$(files_per_s b)
read -r idle_stat_p50 idle_stat_p99 idle_p50 idle_p99 < <(latencies c '0[0-4]*' '0[5-9]*')
read -r idle_ping_p50 idle_ping_p99 < <(redis_ping_latency 1)
cat "$work_dir/c/mnt/o/busy.bin" >/dev/null &
busy=$!
redis_ping_latency 0.3 >"$work_dir/ping.txt" &
sleep 0.1
read -r stat_p50 stat_p99 open_p50 open_p99 < <(latencies c '1[0-4]*' '1[5-9]*')
wait "$busy"
read -r ping_p50 ping_p99 <"$work_dir/ping.txt"

fills() { redis-cli -p "$redis_port" --scan --pattern 'fetchfs:v1:fill:*' | sort; }
fills_before=$(fills)
cat "$work_dir/a/mnt/o/slow/takeover.bin" >/dev/null 2>&1 &
leader=$!
fill=""
until [[ -n "$fill" ]]; do
    sleep 0.05
    fill=$(comm -13 <(printf '%s\n' "$fills_before") <(fills) | head -n 1)
done
cat "$work_dir/b/mnt/o/slow/takeover.bin" >"$work_dir/takeover.out" &
follower=$!
# 40% of the body: its head and 26 chunks of 4 MiB - 4 KiB in A's stream.
until [[ $(redis-cli -p "$redis_port" xlen "$fill") -ge 27 ]]; do
    sleep 0.05
done
kill -KILL "${mount_pids[a]}"
killed=$(date +%s%N)
wait "$follower"
taken_over=$(date +%s%N)
wait "$leader" || true
cmp "$work_dir/data/slow/takeover.bin" "$work_dir/takeover.out"
rm -f "$work_dir/takeover.out"
fusermount3 -u "$work_dir/a/mnt" 2>/dev/null || umount -l "$work_dir/a/mnt" 2>/dev/null || true
mount_pids[a]=""

printf '\n%-34s %10s\n' "cold read of 256 MiB" "MB/s"
printf '%-34s %10s\n' "curl (the limit)" "$curl_rate" \
    "first host (from the origin)" "$first_rate" \
    "second host (from the fleet)" "$fleet_b" \
    "third host (from the fleet)" "$fleet_c"
printf '%-34s %10s\n' "fleet / curl" "$(awk -v f="$fleet_b" -v c="$curl_rate" 'BEGIN { printf "%.2f", f / c }')" \
    "fleet / first host" "$(awk -v f="$fleet_b" -v c="$first_rate" 'BEGIN { printf "%.2f", f / c }')"
printf '%-34s %10s\n' "origin GETs, read in turn" "$(gets_of model.bin)" \
    "origin GETs, opened at once" "$(gets_of together.bin)"
printf '%-34s %10s\n' "Redis memory" \
    "$(redis-cli -p "$redis_port" info memory | sed -n 's/^used_memory_human:\(.*\)\r$/\1/p')"
printf '\n%-34s %10s\n' "2,000 files of 4 KiB" "files/s"
printf '%-34s %10s\n' "first host (from the origin)" "$small_origin" \
    "second host (from the fleet)" "$small_fleet"
printf '%-34s %10s\n' "stat, p50 / p99" "$idle_stat_p50 / $idle_stat_p99 ms" \
    "open+read, p50 / p99" "$idle_p50 / $idle_p99 ms" \
    "stat during a fleet fill, p50 / p99" "$stat_p50 / $stat_p99 ms" \
    "open+read during a fill, p50 / p99" "$open_p50 / $open_p99 ms" \
    "Redis PING alone, p50 / p99" "$idle_ping_p50 / $idle_ping_p99 ms" \
    "Redis PING during a fill, p50 / p99" "$ping_p50 / $ping_p99 ms"
printf '\n%s\n' "takeover of a 256 MiB fetch at $SLOW_RATE/s, leader killed at 40%"
printf '%-34s %10s\n' "kill -9 of the leader to done" \
    "$(awk -v ns=$((taken_over - killed)) 'BEGIN { printf "%.1f s", ns / 1e9 }')" \
    "origin GETs: whole / ranged" "$(gets_of slow/takeover.bin) / $(ranged_gets_of slow/takeover.bin)"
