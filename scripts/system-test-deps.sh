#!/usr/bin/env bash
# System packages the tests drive for real: Chromium renders the HTML report in a browser test;
# an exFAT image mounted through FUSE is the USB drive that holds no symlinks.
# Installed only when missing; needs root (CI runs as root).
set -euo pipefail
packages=(chromium exfat-fuse exfatprogs)
need=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
