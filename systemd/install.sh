#!/usr/bin/env bash
# Installs hsmfs + archived as system services on a Debian 12 machine (as root):
#   - the project into its own virtual environment (PREFIX),
#   - the units hsmfs@.service, archived.service and the example srv-nearline.mount,
#   - the mount helper /sbin/mount.fuse.hsmfs (and umount.fuse.hsmfs),
#   - commented default configuration files in CONF_DIR (existing ones are kept; the new
#     defaults go next to them as *.dist),
#   - the state, cache, nearline mount point and ONLINE directories,
#   - the configuration store with the archive's device and its IndexPath (an existing
#     IndexPath is kept), named by ARCHIVED_CONFIG in archived.env, so that archived and
#     archivectl find the store and the index without options,
# and, where systemd is running, enables hsmfs@NEARLINE and archived.
#
# Every location is a variable (defaults below); e.g. NEARLINE=/data/nearline systemd/install.sh
# Debian packages it needs: python3-venv python3-dev gcc pkg-config fuse3 libfuse3-dev
# (systemd/bootstrap.sh installs them).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
PREFIX=${PREFIX:-/opt/hsmfs-archived}
CONF_DIR=${CONF_DIR:-/etc/hsmfs-archived}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
SBIN_DIR=${SBIN_DIR:-/sbin}
NEARLINE=${NEARLINE:-/srv/nearline}
ONLINE=${ONLINE:-/srv/online}
HSMFS_STATE_ROOT=${HSMFS_STATE_ROOT:-/var/lib/hsmfs}
HSMFS_CACHE_ROOT=${HSMFS_CACHE_ROOT:-/var/cache/hsmfs}
ARCHIVED_STATE=${ARCHIVED_STATE:-/var/lib/archived}
HSMFS_METRICS_PORT=${HSMFS_METRICS_PORT:-9730}
ARCHIVED_METRICS_PORT=${ARCHIVED_METRICS_PORT:-9731}

say() { echo "install: $*"; }
die() { echo "install: error: $*" >&2; exit 1; }

# The mount point as systemd-escape --path writes it: /srv/nearline -> srv-nearline.
escape_path() {
    if command -v systemd-escape >/dev/null; then
        systemd-escape --path "$1"
    else
        local p=${1#/}
        p=${p%/}
        p=${p//-/\\x2d}
        echo "${p//\//-}"
    fi
}

check_requirements() {
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found; apt-get install python3 python3-venv"
    "$PYTHON" -c 'import ensurepip' 2>/dev/null || die "python3-venv missing; apt-get install python3-venv"
    command -v fusermount3 >/dev/null || die "fusermount3 not found; apt-get install fuse3"
    [[ "$NEARLINE" == /* && "$ONLINE" == /* ]] || die "NEARLINE and ONLINE must be absolute paths"
}

install_venv() {
    [ -x "$PREFIX/bin/python" ] || "$PYTHON" -m venv "$PREFIX"
    # Same version number on an upgrade from a newer checkout: replace it, keep the deps.
    "$PREFIX/bin/pip" uninstall -q -y hsmfs-archived >/dev/null 2>&1 || true
    "$PREFIX/bin/pip" install -q "$SRC"
    say "installed $("$PREFIX/bin/pip" show hsmfs-archived | sed -n 's/^Version: /hsmfs-archived /p') into $PREFIX"
}

# The shipped files name the default locations; point them at the chosen ones.
localize() {
    local instance
    instance=$(escape_path "$NEARLINE")
    instance=${instance//\\/\\\\}  # sed replacement: a backslash (\x2d) must be doubled
    sed -e "s|/opt/hsmfs-archived|$PREFIX|g" \
        -e "s|/etc/hsmfs-archived|$CONF_DIR|g" \
        -e "s|/var/lib/hsmfs|$HSMFS_STATE_ROOT|g" \
        -e "s|/var/cache/hsmfs|$HSMFS_CACHE_ROOT|g" \
        -e "s|/var/lib/archived|$ARCHIVED_STATE|g" \
        -e "s|hsmfs@srv-nearline.service|hsmfs@$instance.service|g" \
        -e "s|srv-nearline|$instance|g" \
        -e "s|/srv/nearline|$NEARLINE|g" \
        -e "s|/srv/online|$ONLINE|g" \
        "$1"
}

install_file() {  # MODE SOURCE TARGET
    local tmp
    tmp=$(mktemp)
    localize "$2" >"$tmp"
    install -D -m "$1" "$tmp" "$3"
    rm -f "$tmp"
}

install_units() {
    local instance
    instance=$(escape_path "$NEARLINE")
    install_file 0644 "$SRC/systemd/hsmfs@.service" "$UNIT_DIR/hsmfs@.service"
    install_file 0644 "$SRC/systemd/archived.service" "$UNIT_DIR/archived.service"
    # The .mount alternative is an example: installed under its own name, never enabled.
    install_file 0644 "$SRC/systemd/srv-nearline.mount" "$CONF_DIR/examples/$instance.mount"
    install_file 0755 "$SRC/systemd/mount.fuse.hsmfs" "$SBIN_DIR/mount.fuse.hsmfs"
    ln -sf mount.fuse.hsmfs "$SBIN_DIR/umount.fuse.hsmfs"
    say "units in $UNIT_DIR, mount helper $SBIN_DIR/mount.fuse.hsmfs"
}

install_config() {  # keep what the operator has; offer the new defaults as *.dist
    local name target tmp
    for name in hsmfs.toml archived.env; do
        target="$CONF_DIR/$name"
        tmp=$(mktemp)
        localize "$SRC/systemd/$name" >"$tmp"
        case "$name" in
            hsmfs.toml) sed -i "s|^# port = 0$|port = $HSMFS_METRICS_PORT|" "$tmp" ;;
            archived.env)
                sed -i -e "s|^# ARCHIVED_METRICS=.*|ARCHIVED_METRICS=127.0.0.1:$ARCHIVED_METRICS_PORT|" \
                    -e "s|^# ARCHIVED_CONFIG=|ARCHIVED_CONFIG=|" "$tmp" ;;
        esac
        if [ -e "$target" ]; then
            install -m 0644 "$tmp" "$target.dist"
            say "kept $target (new defaults in $target.dist)"
        else
            install -D -m 0644 "$tmp" "$target"
            say "wrote $target"
        fi
        rm -f "$tmp"
    done
}

create_directories() {
    local instance
    instance=$(escape_path "$NEARLINE")
    install -d -m 0755 "$NEARLINE" "$ONLINE" "$ARCHIVED_STATE"
    install -d -m 0700 "$HSMFS_STATE_ROOT/$instance" "$HSMFS_CACHE_ROOT/$instance"
    say "directories: mount point $NEARLINE, ONLINE $ONLINE, state $HSMFS_STATE_ROOT/$instance," \
        "cache $HSMFS_CACHE_ROOT/$instance, archived $ARCHIVED_STATE"
}

# The store archived.env names (the one written now, or the operator's own).
configured_store() {
    sed -n 's/^ARCHIVED_CONFIG=//p' "$CONF_DIR/archived.env" | tail -n 1
}

init_configuration() {
    local store
    store=$(configured_store)
    [ -n "$store" ] || store="lmdb://$ARCHIVED_STATE/conf"
    "$PREFIX/bin/archivectl" --config "$store" config init --index "$ARCHIVED_STATE/index.sqlite" \
        >/dev/null
    say "configuration $store: IndexPath $("$PREFIX/bin/archivectl" --config "$store" config get \
        /dicomConfigurationRoot/dicomDevicesRoot/archived/deviceExtensions/ArchiveDeviceExtension/IndexPath)"
}

enable_services() {
    local units=("hsmfs@$(escape_path "$NEARLINE").service" archived.service)
    if [ -d /run/systemd/system ] && [ "$UNIT_DIR" = /etc/systemd/system ]; then
        systemctl daemon-reload
        systemctl enable "${units[@]}"
        say "enabled ${units[*]}; start them with: systemctl start ${units[*]}"
    else
        say "systemd is not running here (or UNIT_DIR is not /etc/systemd/system):" \
            "services not enabled; on the target run: systemctl enable --now ${units[*]}"
    fi
}

check_requirements
install_venv
install_units
install_config
create_directories
init_configuration
enable_services
ctl="$PREFIX/bin/archivectl"
# archivectl reads ARCHIVED_CONFIG from /etc/hsmfs-archived/archived.env by itself.
[ "$CONF_DIR" = /etc/hsmfs-archived ] || ctl="ARCHIVED_CONFIG=$(configured_store) $ctl"
say "next: start hsmfs (systemctl start hsmfs@$(escape_path "$NEARLINE").service), then register" \
    "the file systems: $ctl fs add --group ONLINE_STORAGE $ONLINE;" \
    "$ctl fs add --group NEARLINE_STORAGE tar:$NEARLINE (refused unless hsmfs is mounted there)"
