#!/bin/sh
# tests/bench/bench_adapt.sh: domain-shift benchmark of the decoder adapter on phantom data (label
# "bench": prints a table, never gates). Base model and source adapter: deploy/demo (trained on
# site style A). For each target site (B, C, D): Dice of the base model with box prompts; of the
# site-A adapter prompt-free; after test-time adaptation (no labels); after supervised adaptation
# of the adapter with N labelled target slices; and the same with each N of NFULL by fine-tuning the
# whole decoder and the whole model. Test slices are other bodies than the training slices.
#
# Environment: SAMDA_ADAPTER (program), SITES ("B C D"), NS ("5 20 100"), NFULL ("20"), EPOCHS (30, every
#              method), TEST_COUNT (40), THREADS (2), DEVICE (cpu; cuda on a GPU machine), PARALLEL (1:
#              the sites run at once, each in its own process: for a GPU, whose kernels this small model
#              leaves mostly idle; peak memory figures then include the other processes' on CUDA),
#              PLACE (all: the adapter's parts for supervised adaptation; the site-A adapter gets those
#              it lacks, freshly initialised), WORK (scratch), SAMDA (for `samda phantom`).
#              NFULL="" leaves the fine-tuning rows out.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${SAMDA_ADAPTER:-$here/build-model/samda-adapter}
ck=${CHECKPOINT:-$here/deploy/demo/sam_demo_base.pth}
src=${SOURCE_ADAPTER:-$here/deploy/demo/site_A_adapter.safetensors}
work=${WORK:-$(mktemp -d /tmp/samda-bench.XXXXXX)}
mkdir -p "$work"
threads=${THREADS:-2}
epochs=${EPOCHS:-30}
common="--device ${DEVICE:-cpu} --threads $threads --quiet"
[ -x "$bin" ] && [ -f "$ck" ] && [ -f "$src" ] || { echo "bench_adapt: need $bin, $ck and $src" >&2; exit 77; }

phantom() {
    if [ -n "${SAMDA:-}" ]; then "$SAMDA" phantom "$@" >/dev/null; return; fi
    if [ ! -x "$work/phantom" ]; then
        printf '#include "phantom.h"\nint main(int c, char **v) { return samda_phantom_main(c - 1, v + 1); }\n' > "$work/pm.c"
        cc -std=c17 -O2 -D_GNU_SOURCE -I"$here/phantom" -I"$here/common" "$here"/phantom/*.c "$here"/common/*.c "$work/pm.c" -lm -o "$work/phantom"
    fi
    "$work/phantom" phantom "$@" >/dev/null
}
field() { sed -n "s/.*\"$1\":\([-0-9.e]*\).*/\1/p" | head -1; }

# phantom is built once, before the sites may run in parallel
phantom --out "$work/probe" --site A --count 1 --seed 1 --size 64

one_site() {
    site=$1
    mkdir -p "$work/$site"
    phantom --out "$work/$site/train" --site "$site" --count 100 --seed 1001 --slices-per-body 10 --size 256
    phantom --out "$work/$site/test" --site "$site" --count "${TEST_COUNT:-40}" --seed 2002 --slices-per-body 10 --size 256
    t="$work/$site/test"
    base=$("$bin" eval --checkpoint "$ck" --data "$t" --prompt box $common | field mean_dice)
    echo "| $site | base model (no adapter) | 0 | 0 | - | $base | - | - |"
    s_free=$("$bin" eval --checkpoint "$ck" --adapter "$src" --data "$t" --prompt free $common | field mean_dice)
    s_box=$("$bin" eval --checkpoint "$ck" --adapter "$src" --data "$t" --prompt box $common | field mean_dice)
    np=$("$bin" info --checkpoint "$ck" --adapter "$src" $common | field trainable_params)
    echo "| $site | site-A adapter | 0 | $np | $s_free | $s_box | - | - |"
    start=$(date +%s)
    r=$("$bin" tta --checkpoint "$ck" --adapter "$src" --data "$t" --out "$work/$site/tta.safetensors" $common)
    tta_s=$(( $(date +%s) - start ))
    rev=$(echo "$r" | sed -n 's/.*"reverted":\([a-z]*\).*/\1/p')
    t_free=$("$bin" eval --checkpoint "$ck" --adapter "$work/$site/tta.safetensors" --data "$t" --prompt free $common | field mean_dice)
    t_box=$("$bin" eval --checkpoint "$ck" --adapter "$work/$site/tta.safetensors" --data "$t" --prompt box $common | field mean_dice)
    echo "| $site | site-A adapter + TTA (reverted: $rev, ${tta_s} s) | 0 | $np | $t_free | $t_box | - | - |"
    for n in ${NS:-5 20 100}; do
        r=$("$bin" train --checkpoint "$ck" --adapter-in "$src" --data "$work/$site/train" --max-cases "$n" \
            --out "$work/$site/n$n.safetensors" --epochs "$epochs" --val-split 0 --patience 0 --lr 2e-3 \
            --place "${PLACE:-all}" \
            --eval-data "$t" $common)
        echo "| $site | adapter, supervised | $n | $(echo "$r" | field trainable_params) | $(echo "$r" | field test_dice_free) | $(echo "$r" | field test_dice_box) | $(echo "$r" | field seconds_per_epoch) | $(echo "$r" | field peak_rss_mb) |"
    done
    for n in ${NFULL-20}; do
        for scope in decoder full; do
            r=$("$bin" train --checkpoint "$ck" --adapter-in "$src" --data "$work/$site/train" --max-cases "$n" \
                --out "$work/$site/$scope$n.safetensors" --epochs "$epochs" --val-split 0 --patience 0 --lr 1e-4 \
                --scope "$scope" --eval-data "$t" $common)
            echo "| $site | fine-tune $scope (+ adapter tokens) | $n | $(echo "$r" | field trainable_params) | $(echo "$r" | field test_dice_free) | $(echo "$r" | field test_dice_box) | $(echo "$r" | field seconds_per_epoch) | $(echo "$r" | field peak_rss_mb) |"
        done
    done
}

echo "| site | method | labelled slices | trainable params | Dice prompt-free | Dice box | s/epoch | peak memory MB |"
echo "|---|---|---|---|---|---|---|---|"
if [ "${PARALLEL:-0}" = 1 ]; then
    for site in ${SITES:-B C D}; do one_site "$site" > "$work/rows.$site" 2>&1 & done
    wait
    for site in ${SITES:-B C D}; do cat "$work/rows.$site"; done
else
    for site in ${SITES:-B C D}; do one_site "$site"; done
fi
