#!/usr/bin/env bash
# Build the Linux bundle and check it works: resources and Qt plugins are inside, no GPU libraries
# in a CPU build, `--self-test` passes, the editor window opens on a sample and renders (offscreen),
# and every method runs once through the bundled CLI on the demo model, from outside the source
# tree with a bare environment.
#
#   packaging/check_bundle.sh              build (packaging/build.sh) then check: ~10.5 min on 2 cores
#   packaging/check_bundle.sh --no-build   check dist/malleable as it is (or $DIST/malleable): ~2 min
#
# Not part of the test run (tests/test_packaging.py is the fast check).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ "${1:-}" = "--no-build" ] || "$ROOT/packaging/build.sh"
B="${DIST:-$ROOT/dist}/malleable"
I="$B/_internal"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
fail() { echo "check_bundle: FAILED: $*" >&2; exit 1; }
START=$(date +%s)

for f in malleable malleable-edit; do [ -x "$B/$f" ] || fail "missing executable $f"; done
for f in resources/models/demo/model_index.json resources/models/demo/unet/config.json \
         resources/samples/shapes.png resources/configs/stable-diffusion-v1-5/model_index.json \
         resources/tokenizer resources/sentences resources/icons/malleable.svg \
         PySide6/Qt/plugins/platforms/libqxcb.so PySide6/Qt/plugins/platforms/libqoffscreen.so \
         PySide6/Qt/plugins/imageformats; do
    [ -e "$I/$f" ] || fail "missing _internal/$f"
done
[ ! -e "$I/torchvision" ] || fail "torchvision is bundled"
if ! find "$I" -name 'libtorch_cuda*' | grep -q .; then
    ! find "$I" \( -name 'libcudnn*' -o -name 'libcublas*' -o -name 'libnccl*' \) | grep -q . \
        || fail "CUDA libraries in a CPU build"
fi

# A bare environment, away from the source tree: only the bundle may provide anything.
run() { (cd "$WORK" && env -i PATH=/usr/bin:/bin HOME="$WORK" HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen "$@"); }
run "$B/malleable" --self-test || fail "malleable --self-test"
run "$B/malleable-edit" --self-test > /dev/null || fail "malleable-edit --self-test"
run "$B/malleable" --cli methods > /dev/null || fail "malleable --cli methods"
[ "$(run "$B/malleable-edit" methods --json | grep -c '"name": "')" -ge 4 ] || fail "malleable-edit methods --json"

IN="$I/resources/samples/shapes.png"
# the editor itself: the window opens on the sample, lays out and renders to a PNG
run "$B/malleable" --screenshot "$WORK/window.png" "$IN" || fail "malleable --screenshot"
[ "$(stat -c %s "$WORK/window.png")" -gt 20000 ] || fail "the editor window rendered nearly empty"
[ -z "${SCREENSHOT_TO:-}" ] || cp "$WORK/window.png" "$SCREENSHOT_TO"
echo "  editor window ok"

edit() { local m="$1"; shift; run "$B/malleable-edit" "$m" "$IN" -o "$WORK/$m.png" --quiet "$@" \
             && [ -s "$WORK/$m.png" ] || fail "malleable-edit $m"; echo "  $m ok"; }
edit reconstruct --steps 3
edit pnp --steps 3 --prompt "a blue circle" --source-prompt "a red circle"
edit drag --steps 4 --lora-steps 2 --drag-steps 2 --points 128,128,150,128 --prompt "a red circle"
edit pix2pix-zero --steps 3 --source-word circle --target-word square --source-prompt "a red circle" --reg-steps 1
edit style-diffusion --steps 3 --prompt "a watercolor circle" --train-iters-scale 2
edit diffuseit --steps 4 --prompt "a watercolor painting" --resample 1 --cutouts 2

echo "check_bundle: ok ($(du -sh "$B" | cut -f1), checks took $(( $(date +%s) - START )) s)"
