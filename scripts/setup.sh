#!/usr/bin/env bash
# Idempotent machine setup: makes sure a WebGPU adapter (Mesa lavapipe from bookworm-backports), Debian's
# chromium (the browser suite) and the npm dependencies exist. Quick when everything is already installed; run by `npm test` / `npm run train` (pre* scripts).
set -euo pipefail
cd "$(dirname "$0")/.."

have_lavapipe() {
  # Dawn rejects Debian 12's own Mesa 22.3; the backports build (25.x) works.
  local v
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  [ -n "$v" ] && dpkg --compare-versions "$v" ge 24 && [ -n "$(ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null)" ]
}

if ! have_lavapipe; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
    echo "setup: no usable Vulkan driver. Install Mesa >= 24 (mesa-vulkan-drivers from bookworm-backports) as root." >&2
    exit 1
  fi
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "setup: installing Mesa lavapipe (mesa-vulkan-drivers) from bookworm-backports…" >&2
  src=/etc/apt/sources.list.d/backports.sources
  if [ ! -f "$src" ]; then
    $SUDO tee "$src" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
fi

# Debian's chromium runs the browser suite (headless, WebGPU on SwiftShader); nothing downloads a browser.
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
    echo "setup: no chromium for the browser suite. Install Debian's chromium as root (apt-get install chromium)." >&2
    exit 1
  fi
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "setup: installing Debian's chromium (for the browser suite)…" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# npm dependencies: install when node_modules is missing or older than the lockfile.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies…" >&2
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
fi
