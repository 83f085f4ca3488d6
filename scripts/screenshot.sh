#!/usr/bin/env bash
# Screenshot a built page with headless Chromium (Debian's `chromium` package), offline:
#   scripts/screenshot.sh chapters/01_policy_gradient out.png [height]
set -euo pipefail
page=${1:?page path under _build/html, without .html}
out=${2:?output png}
height=${3:-4000}
root=$(cd "$(dirname "$0")/.." && pwd)
profile=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --window-size=1280,"$height" --virtual-time-budget=8000 \
  --screenshot="$out" "file://$root/_build/html/$page.html" 2>/dev/null
rm -rf "$profile"
