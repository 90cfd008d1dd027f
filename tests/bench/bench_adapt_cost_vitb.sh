#!/bin/sh
# tests/bench/bench_adapt_cost_vitb.sh: what adaptation costs on SAM ViT-B's real architecture (label
# "bench": prints, never gates). A vit_b with random weights (the cost does not depend on the
# weights; Dice here means nothing) is written by `samda adapter pretrain` (one step), then the same
# 4 phantom slices (3 train, 1 validation, batch 1) are trained once with the decoder adapter
# (frozen encoder: embeddings computed once and cached) and once as whole-model fine-tuning; each
# prints trainable parameters, seconds per epoch and peak RSS. Needs about 12 GB of memory and 25
# minutes on 2 cores. Environment: SAMDA (the samda program), THREADS (2), WORK (scratch).
set -eu
samda=${SAMDA:-$(cd "$(dirname "$0")/../.." && pwd)/build/daemon/samda}
work=${WORK:-$(mktemp -d /tmp/samda-cost.XXXXXX)}
threads=${THREADS:-2}
[ -x "$samda" ] || { echo "bench_adapt_cost_vitb: need $samda" >&2; exit 77; }
cat > "$work/vit_b.json" <<'JSON'
{"image_encoder": {"img_size": 1024, "patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12,
  "global_attn_indexes": [2, 5, 8, 11], "window_size": 14, "mlp_ratio": 4, "out_chans": 256, "qkv_bias": true,
  "use_rel_pos": true, "norm_eps": 1e-06},
 "prompt_encoder": {"embed_dim": 256, "image_embedding_size": [64, 64], "input_image_size": [1024, 1024],
  "mask_in_chans": 16},
 "mask_decoder": {"transformer_dim": 256, "transformer_depth": 2, "mlp_dim": 2048, "num_heads": 8,
  "attention_downsample_rate": 2, "num_multimask_outputs": 3, "iou_head_depth": 3, "iou_head_hidden_dim": 256},
 "pixel_mean": [123.675, 116.28, 103.53], "pixel_std": [58.395, 57.12, 57.375]}
JSON
"$samda" phantom --out "$work/ph" --site B --count 12 --seed 5 >/dev/null
common="--threads $threads --quiet"
"$samda" adapter pretrain --config "$work/vit_b.json" --data "$work/ph" --out "$work/vitb.pth" --epochs 1 \
    --max-seconds 1 --max-cases 1 --batch 1 $common >/dev/null
for scope in adapter full; do
    epochs=2; [ $scope = full ] && epochs=1
    "$samda" adapter train --checkpoint "$work/vitb.pth" --data "$work/ph" --out "$work/$scope.safetensors" \
        --scope $scope --epochs $epochs --max-cases 4 --batch 1 --seed 1 $common > "$work/$scope.json"
    printf '%s: ' $scope
    /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("trainable %d, %.2f s/epoch, encoder pass %.1f s once, peak RSS %d MB" % (d["trainable_params"], d["seconds_per_epoch"], d["encode_seconds"], d["peak_rss_mb"]))' "$work/$scope.json"
done
