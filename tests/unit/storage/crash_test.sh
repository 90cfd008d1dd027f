#!/bin/sh
# Crash test of the storage module: run storage_crash_writer, kill it with SIGKILL after a random
# 0.2..1.0 s, run storage_check on the data directory with every UID acknowledged so far; 5 rounds
# on the same directory.
# Usage: crash_test.sh WRITER CHECKER WORK_DIR [ROUNDS]
set -eu
writer=$1 checker=$2 work=$3 rounds=${4:-5}
rm -rf "$work"
mkdir -p "$work"
data=$work/data
round=1
while [ "$round" -le "$rounds" ]; do
    "$writer" "$data" "$round" > "$work/acked.$round" 2> "$work/writer.$round.err" &
    pid=$!
    ms=$(( 200 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 800 ))
    sleep "$(printf '0.%03d' "$ms")"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ -s "$work/writer.$round.err" ]; then
        echo "round $round: writer failed before the kill:" >&2
        cat "$work/writer.$round.err" >&2
        exit 1
    fi
    n=$(wc -l < "$work/acked.$round" | tr -d ' ')
    if ! out=$("$checker" "$data" "$work"/acked.*); then
        echo "round $round (killed after $ms ms, $n acknowledged): check failed" >&2
        exit 1
    fi
    echo "round $round: killed after $ms ms, $n acknowledged; $out"
    round=$((round + 1))
done
rm -rf "$work"
