#!/bin/sh
# deploy/train-demo.sh: reproduce the demo models in deploy/demo/ from nothing but this repository.
#
#   1. phantom slices of site style A (phantom/: 480 slices of 30 bodies, 256 x 256, seed 1);
#   2. a small SAM (deploy/demo/config.json: ViT encoder 96 wide, 4 blocks, 256 px input; the official
#      prompt encoder and mask decoder sizes) trained from seeded random weights with box and point
#      prompts -> deploy/demo/sam_demo_base.pth (official key layout, float16);
#   3. a prompt-free site adapter for liver, kidney, spleen and aorta (CT window 50/400) on the same
#      data -> deploy/demo/site_A_adapter.safetensors.
# Seeded throughout; the CPU result depends only on the thread count (2 here). Wall time on the
# 2-core build machine: see deploy/demo/README.md.
#
# Environment: SAMDA_ADAPTER  the adapter program (default: build-model/samda-adapter, built by
#                             `cmake -S model -B build-model && cmake --build build-model --target samda-adapter`)
#              SAMDA          a samda binary with `samda phantom` (else phantom/ is compiled with cc)
#              WORK           scratch folder (default: a new folder under /tmp)
#              PRETRAIN_SECONDS  time budget of step 2 (default 1500)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
out="$here/deploy/demo"
adapter_bin=${SAMDA_ADAPTER:-$here/build-model/samda-adapter}
work=${WORK:-$(mktemp -d /tmp/samda-demo.XXXXXX)}
threads=${THREADS:-2}
[ -x "$adapter_bin" ] || { echo "train-demo: $adapter_bin not found (build the samda-adapter target)" >&2; exit 1; }

phantom() {
    if [ -n "${SAMDA:-}" ]; then
        "$SAMDA" phantom "$@"
    else
        if [ ! -x "$work/phantom" ]; then
            printf '#include "phantom.h"\nint main(int c, char **v) { return samda_phantom_main(c - 1, v + 1); }\n' > "$work/phantom_main.c"
            cc -std=c17 -O2 -D_GNU_SOURCE -I"$here/phantom" -I"$here/common" "$here"/phantom/*.c "$here"/common/*.c "$work/phantom_main.c" -lm -o "$work/phantom"
        fi
        "$work/phantom" phantom "$@"
    fi
}

start=$(date +%s)
phantom --out "$work/A" --site A --count 480 --seed 1 --slices-per-body 16 --size 256
"$adapter_bin" pretrain --config "$out/config.json" --data "$work/A" --out "$out/sam_demo_base.pth" \
    --epochs 100 --lr 5e-4 --batch 8 --val-split 0.05 --max-seconds "${PRETRAIN_SECONDS:-1500}" --seed 1 \
    --threads "$threads" --device cpu --half
"$adapter_bin" train --checkpoint "$out/sam_demo_base.pth" --data "$work/A" --out "$out/site_A_adapter.safetensors" \
    --labels liver,kidney,spleen,aorta --window 50,400 --rank 16 --tokens 4 --prompt mixed --epochs 4 --max-cases 120 \
    --lr 2e-3 --val-split 0.1 --patience 3 --seed 1 --threads "$threads" --device cpu \
    --place self_attn,token_to_image,mlp,image_to_token,tokens_self,tokens_image
# (the shipped site-A adapter predates the embedding bottleneck, "embed"; supervised adaptation to a
#  new site adds it: tests/bench/bench_adapt.sh, docs/adaptation.md)
# The adapter above never segmented the spleen prompt-free: three steps of fine-tuning follow (two
# prompt-free, then mixed prompts to give box prompts back what prompt-free training took).
a="$out/site_A_adapter.safetensors"
for step in "free 2e-3 3 1" "free 1e-3 3 2" "mixed 1e-3 2 3"; do
    set -- $step
    "$adapter_bin" train --checkpoint "$out/sam_demo_base.pth" --data "$work/A" --out "$work/step.safetensors" \
        --adapter-in "$a" --labels liver,kidney,spleen,aorta --window 50,400 --prompt "$1" --lr "$2" --epochs "$3" \
        --max-cases 120 --val-split 0.1 --patience 3 --seed "$4" --threads "$threads" --device cpu
    mv "$work/step.safetensors" "$a"
done
"$adapter_bin" info --checkpoint "$out/sam_demo_base.pth" --adapter "$out/site_A_adapter.safetensors" --device cpu
echo "train-demo: done in $(( $(date +%s) - start )) s; scratch data in $work" >&2
