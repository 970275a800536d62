#!/usr/bin/env bash
# Installs the Debian packages fetchfs needs, and only those that are missing.
#
#   scripts/install-deps.sh [GROUP...]     (default: build test)
#
# Groups:
#   build   libclang-dev and g++ (RocksDB is compiled from source; bindgen needs libclang)
#   test    fuse3 (fusermount3, /etc/fuse.conf), curl, tar, attr (getfattr);
#           the clients tests/integration/clients.rs runs on a mount: git,
#           python3 with pip, sqlite3, rsync, dpkg-dev (dpkg-scanpackages);
#           zsh and fish (completions); systemd (its fstab generator and
#           systemd-analyze); python3 also drives `fetchfs top` on
#           a pseudo-terminal; tinyproxy (a real proxy for the proxy
#           tests), prometheus (promtool checks the metrics text),
#           redis-server, redis-cli and openssl (the fleet tier's tests)
#   demo    fuse3, python3 (the demo origin is `python3 -m http.server`)
#   package binutils (cargo-deb strips the binary), gzip, man-db (the package test reads its pages)
#   bench   fuse3, curl, nginx, httpdirfs, rclone
#   lint    shellcheck
#
# It also checks that cargo, rustfmt and clippy are there: the Rust toolchain
# comes from rustup, not from apt.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

packages_of_group() {
    case "$1" in
    build) echo libclang-dev g++ ;;
    test)
        # python3 is Debian's: a test runs it as another user, who may not
        # reach a python3 under root's home (pyenv).
        echo fuse3 curl tar attr sqlite3 rsync dpkg-dev zsh fish python3 systemd
        echo tinyproxy prometheus redis-server openssl
        # Any git on PATH will do (a newer build); Debian's is the fallback.
        command -v git >/dev/null 2>&1 || echo git
        python_packages pip
        ;;
    demo)
        echo fuse3
        python_packages
        ;;
    package) echo binutils gzip man-db ;;
    bench) echo fuse3 curl nginx httpdirfs rclone ;;
    lint) echo shellcheck ;;
    *) return 1 ;;
    esac
}

# Any python3 on PATH will do (pyenv, a venv); Debian's is the fallback.
# `python_packages pip` also wants its pip (`python3 -m pip`).
python_packages() {
    if ! command -v python3 >/dev/null 2>&1; then
        echo python3
        [[ "${1:-}" == pip ]] && echo python3-pip
    elif [[ "${1:-}" == pip ]] && ! python3 -m pip --version >/dev/null 2>&1; then
        echo python3-pip
    fi
    return 0
}

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

# rustup puts cargo in ~/.cargo/bin, which a non-login shell may not have on PATH.
ensure_cargo_on_path() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
}

check_rust_toolchain() {
    ensure_cargo_on_path
    if ! command -v cargo >/dev/null 2>&1; then
        echo "install-deps: cargo not found; install the Rust toolchain with rustup first" >&2
        return 1
    fi
    local component
    for component in rustfmt clippy; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            echo "install-deps: adding the rustup component $component" >&2
            rustup component add "$component"
        fi
    done
}

main() {
    local groups=("$@")
    if [[ ${#groups[@]} -eq 0 ]]; then
        groups=(build test)
    fi
    if [[ "${groups[0]}" == "-h" || "${groups[0]}" == "--help" ]]; then
        usage
        return 0
    fi

    local group package wanted=() missing=()
    for group in "${groups[@]}"; do
        if ! packages_of_group "$group" >/dev/null; then
            echo "install-deps: unknown group '$group' (known: build test demo package bench lint)" >&2
            return 2
        fi
        # Word splitting is wanted: each group is a space-separated list.
        # shellcheck disable=SC2207
        wanted+=($(packages_of_group "$group"))
    done
    for package in "${wanted[@]}"; do
        if ! is_installed "$package" && [[ " ${missing[*]} " != *" $package "* ]]; then
            missing+=("$package")
        fi
    done

    if [[ ${#missing[@]} -gt 0 ]]; then
        local sudo=()
        if [[ $(id -u) -ne 0 ]]; then
            sudo=(sudo)
        fi
        echo "install-deps: installing ${missing[*]}" >&2
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi

    for group in "${groups[@]}"; do
        if [[ "$group" == build || "$group" == test ]]; then
            check_rust_toolchain
            break
        fi
    done
}

main "$@"
