#!/usr/bin/env bash
# Build a local stand-in for the public `python:3.11-slim` image from Debian packages.
#
# Why: on an air-gapped host (or any host that reaches a Debian mirror and PyPI but not Docker
# Hub) `FROM python:3.11-slim` cannot be pulled. Debian bookworm ships Python 3.11, so a minimal
# bookworm root with python3 + pip, imported under the public image's own name, lets the unchanged
# Dockerfiles in this repository build offline.
#
# Usage:  sudo docker/base-image.sh            # builds python:3.11-slim unless it already exists
#         sudo docker/base-image.sh --force    # rebuild even if the tag exists
# Env:    BASE_IMAGE     tag to create                    (default python:3.11-slim)
#         DEBIAN_MIRROR  Debian mirror URL                (default: read from this host's apt sources)
#         DEBIAN_SUITE   Debian suite                     (default bookworm: Python 3.11)
#         CA_BUNDLE      CA bundle copied into the image  (default /etc/ssl/certs/ca-certificates.crt)
#
# Needs root, debootstrap and a running Docker engine. Takes about 1.5 min; the result is ~150 MB.
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-python:3.11-slim}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

log() { echo "base-image: $*" >&2; }

if [[ $FORCE -eq 0 ]] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "$BASE_IMAGE already exists; skipping (use --force to rebuild)"
    exit 0
fi

# The first mirror this host's apt uses for the main archive (not -security, not third-party
# repositories), from deb822 *.sources files or one-line sources.list entries.
apt_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        awk '
            /^[[:space:]]*$/ { if (uri != "" && suites ~ /(^| )'"$DEBIAN_SUITE"'( |$)/) { print uri; exit } uri=""; suites="" }
            /^URIs:/   { uri=$2 }
            /^Suites:/ { $1=""; suites=$0 " " }
            END { if (uri != "" && suites ~ /(^| )'"$DEBIAN_SUITE"'( |$)/) print uri }
        ' "$f" | grep -v -- '-security' | head -n1
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        awk -v suite="$DEBIAN_SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { if ($(i+1) == suite) print $i; break } }' "$f"
    done
}

DEBIAN_MIRROR="${DEBIAN_MIRROR:-$(apt_mirror | head -n1)}"
if [[ -z "$DEBIAN_MIRROR" ]]; then
    log "no Debian $DEBIAN_SUITE mirror found in apt sources; set DEBIAN_MIRROR"
    exit 1
fi
command -v debootstrap >/dev/null || { log "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
[[ -f "$CA_BUNDLE" ]] || { log "CA bundle $CA_BUNDLE not found; set CA_BUNDLE"; exit 1; }

ROOT="$(mktemp -d "${TMPDIR:-/tmp}/condgen-base.XXXXXX")"
trap 'rm -rf "$ROOT"' EXIT

log "debootstrap $DEBIAN_SUITE from $DEBIAN_MIRROR into $ROOT"
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    "$DEBIAN_SUITE" "$ROOT" "$DEBIAN_MIRROR" >"$ROOT.log" 2>&1 || {
    tail -n 30 "$ROOT.log" >&2
    rm -f "$ROOT.log"
    exit 1
}
rm -f "$ROOT.log"

# Like the official image: pip may install into the system interpreter (it is the only user of
# this root), and `python` / `pip` are on PATH under their plain names.
rm -f "$ROOT"/usr/lib/python3*/EXTERNALLY-MANAGED
ln -sf /usr/bin/python3 "$ROOT/usr/local/bin/python"
ln -sf /usr/bin/pip3 "$ROOT/usr/local/bin/pip"
# pip reaches PyPI only through this host's CA bundle (it may include a site proxy's CA).
cp "$CA_BUNDLE" "$ROOT/etc/ssl/certs/ca-certificates.crt"
# Keep the image small: package caches are not part of a base image.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/log/* \
    "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/*

log "importing as $BASE_IMAGE"
tar -C "$ROOT" -c . | docker import \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    - "$BASE_IMAGE" >/dev/null
docker image ls "$BASE_IMAGE" >&2
