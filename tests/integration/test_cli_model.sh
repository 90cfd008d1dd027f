#!/usr/bin/env bash
# samda model info / segment / bench model on the sam-parity fixture (tests/data: a SAM-architecture
# model with a reduced encoder, its weights in float16): real checkpoint reading, encoding and
# decoding through the CLI.
. "$(dirname "$0")/lib.sh"
TINY="$FIXTURES/sam-parity/tiny"
[ -f "$TINY/weights.pth" ] || { echo "SKIP: fixtures not found at $FIXTURES"; exit 77; }
M=(--checkpoint "$TINY/weights.pth" --config "$TINY/config.json" --device cpu)
"$SAMDA" model info "${M[@]}" >"$T/info.json" || fail "model info"
json_expr 'd["parameters"]["total"]' <"$T/info.json" | grep -qx 5229968 || fail "parameter count: $(cat "$T/info.json")"
json_expr 'len(d["fingerprint"])' <"$T/info.json" | grep -qx 64 || fail "fingerprint"
json_expr 'd["blas"]' <"$T/info.json" | grep -qx openblas || fail "BLAS is not OpenBLAS: $(json_expr 'd["blas_path"]' <"$T/info.json")"
ok "model info: 5,229,968 parameters, fingerprint, OpenBLAS in use"

"$SAMDA" segment "${M[@]}" --image "$TINY/image.npy" --box 20,30,120,110 --multimask --out "$T/m.png" >"$T/seg.json" || fail "segment"
json_expr 'len(d["iou"])' <"$T/seg.json" | grep -qx 3 || fail "multimask IoU count"
$PY -c "
import zlib,struct,sys
b=open('$T/m.png','rb').read(); assert b[:8]==b'\x89PNG\r\n\x1a\n'
w,h=struct.unpack('>II',b[16:24]); assert (w,h)==(200,150),(w,h)" || fail "mask PNG is not 200x150"
"$SAMDA" segment "${M[@]}" --image "$FIXTURES/dicom/mr-brain-20/brain_010.dcm" --point 128,128,1 --out "$T/m.npy" >/dev/null || fail "segment a DICOM image"
$PY -c "import numpy; a=numpy.load('$T/m.npy'); assert a.shape==(256,256) and a.dtype==numpy.uint8 and set(numpy.unique(a)) <= {0,1}" || fail "npy mask"
ok "segment: .npy and DICOM input, box and point prompts, PNG and .npy masks"

rc=0; "$SAMDA" segment "${M[@]}" --image "$TINY/image.npy" --box 5,5,1,1 --out "$T/x.png" 2>"$T/e" || rc=$?
[ "$rc" = 2 ] && grep -q "x1 > x0" "$T/e" || fail "a bad box is not refused clearly"
rc=0; "$SAMDA" model info --checkpoint "$T/nope.pth" 2>"$T/e" || rc=$?
[ "$rc" = 1 ] && grep -q "nope.pth" "$T/e" || fail "a missing checkpoint is not named: $(cat "$T/e")"
ok "bad prompts and missing checkpoints get clear errors"

"$SAMDA" bench model "${M[@]}" --batch 2 >"$T/bench.json" || fail "bench model"
json_expr 'd["encoder_images_per_s"] > 0 and d["decoder_ms_per_prompt_batched_16"] > 0' <"$T/bench.json" | grep -qx True || fail "bench output"
ok "bench model prints encoder and decoder figures"

# samda adapter with DICOM data: a phantom series and its ground-truth SEG, on the demo model.
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
if [ -f "$DEMO/sam_demo_base.pth" ]; then
  "$SAMDA" phantom --out "$T/ph" --site A --count 8 --seed 4 --slices-per-body 8 --dicom >/dev/null || fail "phantom"
  "$SAMDA" adapter info --checkpoint "$DEMO/sam_demo_base.pth" --adapter "$DEMO/site_A_adapter.safetensors" >"$T/info.json" || fail "adapter info"
  json_expr 'd["adapter"]["trainable_params"] < 937354 and d["adapter"]["under_1_percent_of_vit_b"]' <"$T/info.json" | grep -qx True || fail "adapter info: $(cat "$T/info.json")"
  "$SAMDA" adapter eval --checkpoint "$DEMO/sam_demo_base.pth" --adapter "$DEMO/site_A_adapter.safetensors" \
    --dicom "$T/ph/dicom/A_00000,$T/ph/dicom/A_00000.seg.dcm" >"$T/eval.json" 2>"$T/eval.err" || fail "adapter eval --dicom: $(cat "$T/eval.err")"
  json_expr 'd["mean_dice"] > 0.3 and len(d["cases"]) > 0' <"$T/eval.json" | grep -qx True || fail "eval: $(head -c 400 "$T/eval.json")"
  rc=0; "$SAMDA" adapter eval --checkpoint "$DEMO/sam_demo_base.pth" --adapter "$DEMO/site_A_adapter.safetensors" \
    --dicom "$T/ph/dicom/A_00000" 2>"$T/e" || rc=$?
  [ "$rc" = 2 ] && grep -q "SERIES_DIR,SEG_FILE" "$T/e" || fail "a bad --dicom is not refused clearly: $(cat "$T/e")"
  ok "samda adapter info / eval --dicom SERIES,SEG (mean Dice $(json_expr 'round(d["mean_dice"],3)' <"$T/eval.json"))"
fi
