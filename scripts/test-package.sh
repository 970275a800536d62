#!/usr/bin/env bash
# The Debian package, as an admin meets it: build it (scripts/package.sh),
# install it with dpkg -i, find the man pages, completions and units, mount
# through an fstab line (type fetchfs, read-only), read a file served by a
# local origin, unmount, and remove the package with dpkg --purge. Run as
# root; scripts/test.sh runs it after `cargo test`.
#
# The package must not be installed already: the test removes it at the end.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo_root"
use_cargo_target_dir

fail() {
    echo "$script_name: $*" >&2
    exit 1
}

if dpkg-query -W -f='${Status}' fetchfs 2>/dev/null | grep -q 'ok installed'; then
    fail "the fetchfs package is installed already; this test would remove it"
fi
scripts/install-deps.sh package test

deb=$(scripts/package.sh)
[[ -f "$deb" ]] || fail "scripts/package.sh did not make a .deb (it said: $deb)"
echo "==> $deb"

scratch=$(mktemp -d /tmp/fetchfs-package.XXXXXX)
mnt="$scratch/artifacts"
origin_pid=""
cleanup() {
    local status=$?
    if is_mounted "$mnt"; then
        umount -l "$mnt" 2>/dev/null || true
    fi
    if [[ -n "$origin_pid" ]]; then
        kill "$origin_pid" 2>/dev/null || true
        wait "$origin_pid" 2>/dev/null || true
    fi
    if dpkg-query -W -f='${Status}' fetchfs 2>/dev/null | grep -q 'ok installed'; then
        dpkg --purge fetchfs >/dev/null || true
    fi
    rm -rf "$scratch"
    exit "$status"
}
exit_traps cleanup

echo "==> dpkg -i"
dpkg -i "$deb"
[[ "$(command -v fetchfs)" == /usr/bin/fetchfs ]] || fail "fetchfs is not /usr/bin/fetchfs"
fetchfs --version
[[ "$(readlink -f /sbin/mount.fetchfs)" == /usr/bin/fetchfs ]] ||
    fail "/sbin/mount.fetchfs does not lead to /usr/bin/fetchfs"
for page in fetchfs fetchfs-mount fetchfs-umount fetchfs-status fetchfs-top; do
    man -w "$page" >/dev/null || fail "no man page $page"
done
man -w 8 mount.fetchfs >/dev/null || fail "no man page mount.fetchfs(8)"
man -P cat fetchfs-mount 2>/dev/null | grep -q -- '--cache-dir' ||
    fail "man fetchfs-mount does not document --cache-dir"
for file in /usr/share/bash-completion/completions/fetchfs \
    /usr/share/zsh/vendor-completions/_fetchfs \
    /usr/share/fish/vendor_completions.d/fetchfs.fish \
    /usr/lib/systemd/system/fetchfs@.service \
    /usr/share/doc/fetchfs/examples/fetchfs.toml \
    /usr/share/doc/fetchfs/examples/mnt-artifacts.mount \
    /usr/share/doc/fetchfs/README.md; do
    [[ -s "$file" ]] || fail "the package has no $file"
done
cp /usr/lib/systemd/system/fetchfs@.service "$scratch/fetchfs@mnt-artifacts.service"
systemd-analyze verify --man=no "$scratch/fetchfs@mnt-artifacts.service" ||
    fail "the installed service unit does not verify"

echo "==> an fstab line"
mkdir -p "$scratch/srv/rel" "$mnt"
head -c 1048576 /dev/urandom >"$scratch/srv/rel/tool.tar.gz"
port=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory "$scratch/srv" "$port" \
    >"$scratch/origin.log" 2>&1 &
origin_pid=$!
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
cat >"$scratch/artifacts.toml" <<EOF
cache_dir = "$scratch/cache"
[origins.rel]
url = "http://127.0.0.1:$port/rel"
EOF
echo "fetchfs $mnt fetchfs config=$scratch/artifacts.toml,allow_other,_netdev 0 0" >"$scratch/fstab"
mount --fstab "$scratch/fstab" "$mnt"
findmnt -n -o FSTYPE,OPTIONS "$mnt"
[[ "$(findmnt -n -o FSTYPE "$mnt")" == fuse.fetchfs ]] || fail "not a fuse.fetchfs mount"
findmnt -n -o OPTIONS "$mnt" | grep -q '^ro,' || fail "the fstab mount is not read-only"
cmp "$scratch/srv/rel/tool.tar.gz" "$mnt/rel/tool.tar.gz" || fail "the file read differs"
fetchfs status "$mnt"

echo "==> umount"
pid=$(sed -n 's/^ *"pid": \([0-9]*\),$/\1/p' "$mnt/.fetchfs/status")
[[ -n "$pid" ]] || fail "no pid in $mnt/.fetchfs/status"
umount "$mnt"
for _ in $(seq 600); do
    [[ -e "/proc/$pid" ]] || break
    sleep 0.1
done
[[ ! -e "/proc/$pid" ]] || fail "the daemon (pid $pid) is still running a minute after umount"
[[ -e "$scratch/cache/closed-cleanly" ]] || fail "the cache was not closed cleanly"

echo "==> dpkg --purge"
dpkg --purge fetchfs
for file in /usr/bin/fetchfs /usr/sbin/mount.fetchfs /usr/share/man/man1/fetchfs.1.gz; do
    [[ ! -e "$file" ]] || fail "$file is still there after dpkg --purge"
done
echo "$script_name: the package installs, mounts from fstab, reads, unmounts and goes"
