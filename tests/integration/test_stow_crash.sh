#!/usr/bin/env bash
# kill -9 of samdad while 4 STOW-RS clients post (each its own series, 4 requests of 5 instances):
# for CRASH_ROUNDS rounds (default 20), samdad is killed 0.2 to 1.5 s into the uploads and restarted.
# After every restart: `samda check` (every object's SHA-256), PRAGMA integrity_check ok, no file
# left in tmp/ (partial uploads included). At the end: every instance a STOW response listed in its
# ReferencedSOPSequence is indexed, and a re-send by STOW completes the 4 series with exactly one
# job each.
. "$(dirname "$0")/lib.sh"
MR="$FIXTURES/dicom/mr-brain-20"
[ -d "$MR" ] || { echo "SKIP: fixtures not found at $FIXTURES"; exit 77; }
HERE=$(cd "$(dirname "$0")" && pwd)
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport"
D="$T/data"; H="http://127.0.0.1:$hport"
for s in 1 2 3 4; do copy_series "$MR" "$T/in$s"; done
start_samdad boot "$T/s.conf"
wait_for_text "$T/boot.log" 'msg="ready"'
ingest=$("$SAMDA" token create pacs --role ingest --data-dir "$D" 2>/dev/null)
[[ "$ingest" == samda_* ]] || fail "token"
kill -TERM "$(cat "$T/boot.pid")"; wait_exit "$(cat "$T/boot.pid")" 15

# client S R: posts series S in 4 requests of 5 instances, one after another, starting with part
# (R + S) mod 4 so that every part is the one in flight in some rounds; responses in $T/rR-sS-N.out
client() {
  local s=$1 r=$2 n k files
  mapfile -t files < <(ls "$T/in$s"/*.dcm | sort)
  for n in 0 1 2 3; do
    k=$(( (r + s + n) % 4 * 5 ))
    $PY "$HERE/stow.py" "$H/dicomweb/studies" "$ingest" "${files[@]:k:5}" >"$T/r$r-s$s-$n.out" 2>&1 || true
  done
}
# acked FILE...: the SOP Instance UIDs listed in ReferencedSOPSequence of complete STOW responses
acked() {
  $PY - "$@" <<'PY'
import json, sys
for f in sys.argv[1:]:
    lines = open(f, errors="replace").read().split("\n", 1)
    if len(lines) < 2 or lines[0].strip() not in ("200", "202"):
        continue
    body = json.loads(lines[1])
    for item in body.get("00081199", {}).get("Value", []):
        print(item["00081155"]["Value"][0])
PY
}

rounds=${CRASH_ROUNDS:-20}
for r in $(seq 1 "$rounds"); do
  start_samdad "r$r" "$T/s.conf"
  wait_for_text "$T/r$r.log" 'msg="ready"'
  pid=$(cat "$T/r$r.pid")
  cpids=()
  for s in 1 2 3 4; do client "$s" "$r" & cpids+=($!); done
  after=$($PY -c "import random; print(round(random.uniform(0.2, 1.5), 2))")
  sleep "$after"
  kill -9 "$pid"
  for p in "${cpids[@]}"; do wait "$p" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
  n=$(acked "$T"/r$r-s*-*.out | tee -a "$T/acked.txt" | wc -l)
  # restart: opening the store removes temporary leftovers, partial uploads included
  start_samdad "r${r}b" "$T/s.conf"
  wait_for_text "$T/r${r}b.log" 'msg="ready"'
  kill -TERM "$(cat "$T/r${r}b.pid")"; wait_exit "$(cat "$T/r${r}b.pid")" 15
  [ "$WAIT_RC" = 0 ] || fail "round $r: samdad after the restart exited $WAIT_RC"
  "$SAMDA" check --data-dir "$D" >"$T/check$r.out" 2>&1 || fail "round $r: data directory inconsistent: $(cat "$T/check$r.out")"
  [ "$(sqlite3 "$D/index.sqlite3" 'PRAGMA integrity_check')" = ok ] || fail "round $r: PRAGMA integrity_check"
  tmp_empty "$D" || fail "round $r: files remain in tmp/: $(find "$D/tmp" -type f | head)"
  ok "round $r: killed after ${after}s ($n instances acknowledged by STOW this round); check, integrity_check, tmp/ clean"
done
sort -u "$T/acked.txt" >"$T/acked.sorted"
[ -s "$T/acked.sorted" ] || fail "no instance was acknowledged before the kills (timing too tight)"
sqlite3 "file:$D/index.sqlite3?mode=ro" "SELECT sop_uid FROM instances" | sort >"$T/indexed.sorted"
missing=$(comm -23 "$T/acked.sorted" "$T/indexed.sorted" | wc -l)
[ "$missing" = 0 ] || fail "$missing instances acknowledged by STOW are not indexed"
ok "all $(wc -l <"$T/acked.sorted") instances acknowledged by STOW are indexed ($(wc -l <"$T/indexed.sorted") indexed in all)"

# The client sends again what it is unsure of: every series completes and gets exactly one job.
start_samdad final "$T/s.conf"
wait_for_text "$T/final.log" 'msg="ready"'
for s in 1 2 3 4; do
  $PY "$HERE/stow.py" "$H/dicomweb/studies" "$ingest" "$T/in$s"/*.dcm >"$T/resend$s.out"
  [ "$(head -1 "$T/resend$s.out")" = 200 ] || fail "re-send of series $s: $(head -c 400 "$T/resend$s.out")"
  [ "$(acked "$T/resend$s.out" | wc -l)" = 20 ] || fail "re-send of series $s: not 20 referenced instances"
done
check_jobs() {
  "$SAMDA" jobs --data-dir "$D" | $PY -c '
import json, sys, collections
jobs = [j for j in json.load(sys.stdin) if j["kind"] == "segment"]
per = collections.Counter(j["series_uid"] for j in jobs)
sys.exit(0 if len(per) == 4 and set(per.values()) == {1} else 1)'
}
for _ in $(seq 150); do check_jobs && break; sleep 0.2; done
check_jobs || fail "not exactly one job per series: $("$SAMDA" jobs --data-dir "$D")"
[ "$("$SAMDA" series --data-dir "$D" | json_expr 'sum(s["instances"] for s in d)')" = 80 ] || fail "not all 80 instances indexed after the re-send"
[ "$("$SAMDA" series --data-dir "$D" | json_expr 'sorted(set(s["state"] for s in d))')" = "['complete']" ] || fail "series not complete: $("$SAMDA" series --data-dir "$D")"
kill -TERM "$(cat "$T/final.pid")"; wait_exit "$(cat "$T/final.pid")" 15
"$SAMDA" check --data-dir "$D" >"$T/check.out" 2>&1 || fail "final check: $(cat "$T/check.out")"
ok "after the re-send: 80 instances, 4 series complete, exactly one job each; final check clean"
