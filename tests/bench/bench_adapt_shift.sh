#!/bin/sh
# tests/bench/bench_adapt_shift.sh: is adaptation safe on shifts the project was not built around?
# (label "bench": measures and prints, never gates, never on time.) Phantom shift families E-H
# (phantom/phantom.h: E gain/offset + blur + bias field, F heavy noise at half resolution, G contrast
# inversion, H gamma + ring and motion artefacts + zoom). For each family and seed: the shipped
# site-A adapter unadapted, after test-time adaptation (no labels), and after supervised adaptation
# with N labelled slices (validation split VAL_SPLIT, so the box guard checks held-out slices);
# Dice prompt-free and box-prompted (and mean HD95 in mm) on test bodies never trained on. Then,
# per family and method, the mean and spread (sample standard deviation, min..max) over seeds, and
# the issue's targets: TTA not below unadapted by more than 0.5 Dice points (mean of seeds, free and
# box), supervised not below unadapted with box prompts.
#
# Environment: FAMILIES ("E F G H"), SEEDS (3: seeds 1..SEEDS, each with its own bodies), NS ("5 20"),
#              EPOCHS (30), TEST_COUNT (40 test slices), TRAIN_COUNT (100 slices to draw N from),
#              VAL_SPLIT (0.2), LR (2e-3), PLACE (all), THREADS (2), DEVICE (cpu; cuda on a GPU),
#              PARALLEL (0; 1 runs the families at once, one process each), TTA_STEPS (default of
#              samda adapter tta), SAMDA_ADAPTER, CHECKPOINT, SOURCE_ADAPTER, WORK (scratch, kept),
#              REPORT_ONLY (1: measure nothing, print the tables of the rows already in $WORK/rows.tsv).
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${SAMDA_ADAPTER:-$here/build-model/samda-adapter}
ck=${CHECKPOINT:-$here/deploy/demo/sam_demo_base.pth}
src=${SOURCE_ADAPTER:-$here/deploy/demo/site_A_adapter.safetensors}
work=${WORK:-$(mktemp -d /tmp/samda-shift.XXXXXX)}
mkdir -p "$work"
families=${FAMILIES:-E F G H}
seeds=${SEEDS:-3}
ns=${NS:-5 20}
epochs=${EPOCHS:-30}
common="--device ${DEVICE:-cpu} --threads ${THREADS:-2} --quiet"
tta_opt=""
[ -n "${TTA_STEPS:-}" ] && tta_opt="--steps $TTA_STEPS"
[ -n "${REPORT_ONLY:-}" ] || [ -x "$bin" ] && [ -f "$ck" ] && [ -f "$src" ] || { echo "bench_adapt_shift: need $bin, $ck and $src" >&2; exit 77; }

phantom() {
    if [ ! -x "$work/phantom" ]; then
        printf '#include "phantom.h"\nint main(int c, char **v) { return samda_phantom_main(c - 1, v + 1); }\n' > "$work/pm.c"
        cc -std=c17 -O2 -D_GNU_SOURCE -I"$here/phantom" -I"$here/common" "$here"/phantom/*.c "$here"/common/*.c "$work/pm.c" -lm -o "$work/phantom"
    fi
    "$work/phantom" phantom "$@" >/dev/null
}
field() { sed -n "s/.*\"$1\":\([-0-9.e]*\).*/\1/p" | head -1; }
# a JSON string value (escaped quotes and backslashes allowed), its escapes dropped
sfield() { sed -n "s/.*\"$1\":\"\(\([^\"\\\\]\|\\\\.\)*\)\".*/\1/p" | head -1 | sed 's/\\//g'; }

# scores ADAPTER TESTDIR -> "free box hd95_free_mm"
scores() {
    jf=$("$bin" eval --checkpoint "$ck" --adapter "$1" --data "$2" --prompt free $common)
    jb=$("$bin" eval --checkpoint "$ck" --adapter "$1" --data "$2" --prompt box $common)
    echo "$(echo "$jf" | field mean_dice) $(echo "$jb" | field mean_dice) $(echo "$jf" | field mean_hd95)"
}

[ -n "${REPORT_ONLY:-}" ] || phantom --out "$work/probe" --site A --count 1 --seed 1 --size 64  # builds it once

# one_family F: rows "family<TAB>method<TAB>seed<TAB>free<TAB>box<TAB>hd95<TAB>note" on stdout
one_family() {
    f=$1
    s=1
    while [ "$s" -le "$seeds" ]; do
        d="$work/$f/s$s"
        mkdir -p "$d"
        phantom --out "$d/train" --site "$f" --count "${TRAIN_COUNT:-100}" --seed $((1000 + 17 * s)) --slices-per-body 10 --size 256
        phantom --out "$d/test" --site "$f" --count "${TEST_COUNT:-40}" --seed $((2000 + 17 * s)) --slices-per-body 10 --size 256
        set -- $(scores "$src" "$d/test")
        printf '%s\tunadapted\t%s\t%s\t%s\t%s\t-\n' "$f" "$s" "$1" "$2" "$3"
        r=$("$bin" tta --checkpoint "$ck" --adapter "$src" --data "$d/test" --out "$d/tta.safetensors" --seed "$s" $tta_opt $common)
        echo "$r" > "$d/tta.json"
        dec=$(echo "$r" | sfield decision | cut -c1-110)
        set -- $(scores "$d/tta.safetensors" "$d/test")
        printf '%s\tTTA\t%s\t%s\t%s\t%s\t%s\n' "$f" "$s" "$1" "$2" "$3" "$dec"
        for n in $ns; do
            r=$("$bin" train --checkpoint "$ck" --adapter-in "$src" --data "$d/train" --max-cases "$n" \
                --out "$d/n$n.safetensors" --epochs "$epochs" --val-split "${VAL_SPLIT:-0.2}" --patience 0 \
                --lr "${LR:-2e-3}" --place "${PLACE:-all}" --seed "$s" $common)
            note="best epoch $(echo "$r" | field best_epoch), box guard $(echo "$r" | field box_dice_parent)->$(echo "$r" | field box_dice_after) rolled back $(echo "$r" | sed -n 's/.*"box_rolled_back":\([a-z]*\).*/\1/p')"
            set -- $(scores "$d/n$n.safetensors" "$d/test")
            printf '%s\tsupervised %s\t%s\t%s\t%s\t%s\t%s\n' "$f" "$n" "$s" "$1" "$2" "$3" "$note"
        done
        s=$((s + 1))
    done
}

if [ -n "${REPORT_ONLY:-}" ]; then
    :
elif [ "${PARALLEL:-0}" = 1 ]; then
    for f in $families; do one_family "$f" > "$work/rows.$f" 2> "$work/err.$f" & done
    wait
else
    for f in $families; do one_family "$f" > "$work/rows.$f"; done
fi
[ -n "${REPORT_ONLY:-}" ] || for f in $families; do cat "$work/rows.$f"; done > "$work/rows.tsv"

echo "Per run (Dice prompt-free / box; HD95 prompt-free in mm, mean over (slice, label) where defined):"
echo
echo "| family | method | seed | Dice free | Dice box | HD95 free mm | note |"
echo "|---|---|---|---|---|---|---|"
awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7 }' "$work/rows.tsv"
echo
echo "Summary over seeds: mean (sample sd; min..max); delta = mean minus the unadapted mean, in Dice points:"
echo
echo "| family | method | seeds | Dice free | Dice box | delta free | delta box | target |"
echo "|---|---|---|---|---|---|---|---|"
awk -F'\t' '
function sd(s, q, n) { return n > 1 ? sqrt((q - s * s / n) / (n - 1)) : 0 }
{
    k = $1 SUBSEP $2
    if (!(k in n)) { order[++nk] = k; fam[k] = $1; meth[k] = $2 }
    n[k]++; sf[k] += $4; qf[k] += $4 * $4; sb[k] += $5; qb[k] += $5 * $5
    if (!(k in lof) || $4 < lof[k]) lof[k] = $4; if (!(k in hif) || $4 > hif[k]) hif[k] = $4
    if (!(k in lob) || $5 < lob[k]) lob[k] = $5; if (!(k in hib) || $5 > hib[k]) hib[k] = $5
}
END {
    for (i = 1; i <= nk; i++) {
        k = order[i]; u = fam[k] SUBSEP "unadapted"
        mf = sf[k] / n[k]; mb = sb[k] / n[k]; uf = sf[u] / n[u]; ub = sb[u] / n[u]
        df = 100 * (mf - uf); db = 100 * (mb - ub)
        t = "-"
        if (meth[k] == "TTA") t = (df >= -0.5 && db >= -0.5) ? "met (>= -0.5)" : "NOT met"
        else if (meth[k] ~ /^supervised/) t = (db >= 0) ? "box met (>= 0)" : "box NOT met"
        printf "| %s | %s | %d | %.3f (%.3f; %.3f..%.3f) | %.3f (%.3f; %.3f..%.3f) | %+.1f | %+.1f | %s |\n",
            fam[k], meth[k], n[k], mf, sd(sf[k], qf[k], n[k]), lof[k], hif[k], mb, sd(sb[k], qb[k], n[k]), lob[k], hib[k], df, db, t
    }
}' "$work/rows.tsv"
echo
echo "settings: FAMILIES=\"$families\" SEEDS=$seeds NS=\"$ns\" EPOCHS=$epochs TEST_COUNT=${TEST_COUNT:-40} VAL_SPLIT=${VAL_SPLIT:-0.2} LR=${LR:-2e-3} PLACE=${PLACE:-all} DEVICE=${DEVICE:-cpu} THREADS=${THREADS:-2}; rows in $work/rows.tsv"
