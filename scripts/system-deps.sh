#!/usr/bin/env bash
# Install the Debian packages given as arguments where they are missing: with apt-get when running as
# root (or with passwordless sudo); otherwise say what to install and carry on, so that the parts that do
# not need them still run. Idempotent: installed packages are left alone.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "docrerank: please install ${missing[*]} with your system's package manager" \
       "(e.g. macOS: brew install tesseract poppler); the steps that need them will say so." >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "docrerank: not root, so not installing ${missing[*]}." \
       "Run: sudo apt-get install -y ${missing[*]}" >&2
  exit 0
fi
echo "docrerank: installing ${missing[*]} with apt-get" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
