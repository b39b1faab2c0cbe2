#!/usr/bin/env bash
# Independent check of the bag label: render the ZPL with zpl-renderer-js
# (npm) and decode both barcodes with zbarimg (Debian: zbar-tools); the
# Code 128 must decode to the order id and the QR to the handoff code.
# Installs what it needs: apt-get install -y zbar-tools nodejs npm; npm i zpl-renderer-js@3.4.0
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${ZPL_CHECK_DIR:-${TMPDIR:-/tmp}/flashkart-zpl-check}"
mkdir -p "$work"
command -v zbarimg >/dev/null || apt-get install -y zbar-tools >/dev/null
if [ ! -d "$work/node_modules/zpl-renderer-js" ]; then
  (cd "$work" && npm init -y >/dev/null && npm install --silent zpl-renderer-js@3.4.0 >/dev/null)
fi
cp "$here/render-zpl.mjs" "$work/"
order="FK-000123"
(cd "$root" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/target-hw}" cargo run -q -p flashkart-hw --example sample_label -- "$order") > "$work/label.zpl"
(cd "$work" && node render-zpl.mjs label.png < label.zpl)
decoded="$(zbarimg --quiet "$work/label.png")"
echo "$decoded"
grep -qx "CODE-128:$order" <<<"$decoded" || { echo "FAIL: Code 128 does not decode to $order"; exit 1; }
grep -qx "QR-Code:FKH:$order:1:9f2a" <<<"$decoded" || { echo "FAIL: QR does not decode to the handoff code"; exit 1; }
echo "ZPL label verified: renders, Code 128 = $order, QR = handoff code"
