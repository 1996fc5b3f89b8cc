#!/usr/bin/env bash
# Screenshots of the built site in headless Chromium (Debian's package:
# `apt-get install chromium`), to look at what a reader sees.
#   usage: docs/screenshots.sh [BUILD_DIR] [OUT_DIR]
# Build the site first (see docs/install.rst). Writes landing.png, api.png,
# gallery.png and gallery_index.png, 1,280 px wide, to OUT_DIR (default
# docs/_build/screenshots).
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "${1:-docs/_build/html}")
out=$(realpath -m "${2:-docs/_build/screenshots}")
browser=$(command -v chromium || command -v chromium-browser) || {
  echo "chromium not found: apt-get install chromium"; exit 2; }
mkdir -p "$out"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
shoot() {  # name, page (relative to the build), window height
  "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" --virtual-time-budget=5000 \
    --window-size="1280,${3:-1000}" --screenshot="$out/$1.png" "file://$build/$2" \
    2>/dev/null
  echo "$out/$1.png <- $2"
}
shoot landing index.html
shoot api generated/skinfomax.InfoMaxVAETransformer.html 1600
shoot gallery auto_examples/plot_quickstart.html 2400
shoot gallery_index auto_examples/index.html 1000
