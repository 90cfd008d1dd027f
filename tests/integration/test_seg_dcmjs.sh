#!/usr/bin/env bash
# A DICOM-SEG written by samda read back with dcmjs (the DICOM library of the OHIF viewer): the
# segments, frames, per-frame source references, referenced series and voxel counts must be what
# samda wrote. Skips when node or dcmjs is missing.
#
# dcmjs is not a Debian package: deploy/install-deps.sh installs it from the npm registry (pinned, into
# ~/.cache/samda/dcmjs, or SAMDA_DCMJS_DIR) when node and npm are present.
. "$(dirname "$0")/lib.sh"
command -v node >/dev/null || { echo "SKIP: node not installed"; exit 77; }
# deploy/install-deps.sh installs dcmjs there when node and npm are present
SAMDA_DCMJS_DIR=${SAMDA_DCMJS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/samda/dcmjs}
export NODE_PATH="$SAMDA_DCMJS_DIR/node_modules${NODE_PATH:+:$NODE_PATH}"
node -e 'require("dcmjs")' 2>/dev/null || {
  echo "SKIP: dcmjs not found (set SAMDA_DCMJS_DIR to a folder holding node_modules/dcmjs)"; exit 77; }
MAKE="$SAMDA_BUILD_DIR/tests/unit/dicom/make_seg_sample"
[ -x "$MAKE" ] || fail "$MAKE not built"

"$MAKE" "$T" > "$T/samda.txt" || fail "make_seg_sample failed"
node "$(dirname "$0")/dcmjs_seg.js" "$T/seg.dcm" > "$T/dcmjs.txt" 2> "$T/dcmjs.err" ||
  fail "dcmjs cannot read the SEG: $(cat "$T/dcmjs.err")"
ok "dcmjs read samda's SEG"

want() { grep -x -- "$1" "$T/dcmjs.txt" >/dev/null || { cat "$T/dcmjs.txt" >&2; fail "dcmjs did not report '$1'"; }; }
want "sopclass 1.2.840.10008.5.1.4.1.1.66.4"
want "modality SEG"
want "type BINARY"
want "frames $(awk '$1=="frames"{print $2}' "$T/samda.txt")"
want "refseries $(awk '$1=="series"{print $2}' "$T/samda.txt")"
want "refinstances $(awk '$1=="instances"{print $2}' "$T/samda.txt")"
ok "SOP class, frame count and referenced series agree"
# Segments with voxel counts, and every frame's segment and source instance.
while read -r line; do want "$line"; done < <(grep -E '^(segment|frame) ' "$T/samda.txt")
ok "segments, voxel counts and per-frame source references agree ($(grep -c '^frame ' "$T/samda.txt") frames)"
