#!/usr/bin/env bash
# Independent check of the bag label: render the ZPL with zpl-renderer-js
# (npm) and decode both barcodes with zbarimg (Debian: zbar-tools); the
# Code 128 must decode to the order id and the QR to the handoff code.
# Needs zbarimg and zpl-renderer-js@3.4.0: scripts/install-test-deps installs both.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${ZPL_CHECK_DIR:-$root/target/test-tools}"
mkdir -p "$work"
command -v zbarimg >/dev/null || { echo "zbarimg missing: run scripts/install-test-deps"; exit 1; }
[ -d "$work/node_modules/zpl-renderer-js" ] || { echo "zpl-renderer-js missing in $work: run scripts/install-test-deps"; exit 1; }
cp "$here/render-zpl.mjs" "$work/"
order="FK-000123"
(cd "$root" && cargo run -q -p flashkart-hw --example sample_label -- "$order") > "$work/label.zpl"
(cd "$work" && node render-zpl.mjs label.png < label.zpl)
decoded="$(zbarimg --quiet "$work/label.png")"
echo "$decoded"
grep -qx "CODE-128:$order" <<<"$decoded" || { echo "FAIL: Code 128 does not decode to $order"; exit 1; }
grep -qx "QR-Code:FKH:$order:1:9f2a" <<<"$decoded" || { echo "FAIL: QR does not decode to the handoff code"; exit 1; }
echo "ZPL label verified: renders, Code 128 = $order, QR = handoff code"
