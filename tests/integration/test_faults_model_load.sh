#!/usr/bin/env bash
# Fault: the model cannot be loaded (a missing checkpoint, then a truncated one). Decision: samdad
# still starts and ingests; one ERROR line names the checkpoint and the cause; /health's "model"
# check says "fail" with that cause (the daemon itself stays healthy: ingest works) and /metrics
# says samda_model_loaded 0; segmentation jobs stay pending (they neither spin nor fail) so that a
# restart with a working [model] segments them.
. "$(dirname "$0")/lib.sh"
MR="$FIXTURES/dicom/mr-brain-20"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -d "$MR" ] || { echo "SKIP: fixtures not found at $FIXTURES"; exit 77; }
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: demo checkpoint missing"; exit 77; }
head -c 300000 "$DEMO/sam_demo_base.pth" >"$T/truncated.pth"

for kind in missing truncated; do
  ck="$T/$kind.pth"; [ "$kind" = missing ] && ck="$T/nope/missing.pth"
  dport=$(free_port); hport=$(free_port)
  rm -rf "$T/data"
  write_conf "$T/$kind.conf" "$dport" "$hport" "[model]" "checkpoint = $ck" "device = cpu"
  start_samdad "$kind" "$T/$kind.conf"
  wait_for_text "$T/$kind.log" 'msg="ready"' 60
  L="$T/$kind.log"
  [ "$(grep -c 'msg="model not loaded' "$L")" = 1 ] || fail "$kind: expected one 'model not loaded' line: $(grep model "$L")"
  line=$(grep 'msg="model not loaded' "$L")
  echo "log: $line"
  [[ "$line" == *level=error* || "$line" == *ERROR* || "$line" == *error* ]] || fail "$kind: not an error line"
  [[ "$line" == *"$(basename "$ck")"* ]] || fail "$kind: the line does not name the checkpoint"
  H="http://127.0.0.1:$hport"
  curl -s "$H/health" >"$T/health.json"
  [ "$(json_expr 'd.get("checks", d)["model"]["status"]' <"$T/health.json")" = fail ] || fail "$kind: /health model: $(cat "$T/health.json")"
  json_expr 'd.get("checks", d)["model"]["detail"]' <"$T/health.json" | grep -q "$(basename "$ck")" || fail "$kind: /health does not name the file"
  curl -s "$H/metrics" | grep -qx 'samda_model_loaded 0' || fail "$kind: /metrics does not say samda_model_loaded 0"
  ok "$kind checkpoint: samdad up, one error line naming the file, /health model fail, /metrics 0"

  storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$MR" 2>"$T/s.err" || fail "$kind: ingest failed: $(tail -3 "$T/s.err")"
  [ "$("$SAMDA" series --data-dir "$T/data" | json_expr 'sum(s["instances"] for s in d)')" = 20 ] || fail "$kind: not 20 indexed"
  wait_for_cmd 20 bash -c "'$SAMDA' jobs --data-dir '$T/data' | $PY -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin))==1 else 1)'"
  sleep 3
  st=$("$SAMDA" jobs --data-dir "$T/data" | json_expr 'd[0]["state"]+"/"+str(d[0].get("attempts",0))')
  [ "${st%%/*}" = pending ] || fail "$kind: job state $st, expected pending"
  [ "${st#*/}" = 0 ] || fail "$kind: job attempted $st without a model (spinning)"
  ok "$kind checkpoint: 20 instances ingested, segmentation job pending ($st), not spinning"
  kill -TERM "$(cat "$T/$kind.pid")"; wait_exit "$(cat "$T/$kind.pid")" 15; [ "$WAIT_RC" = 0 ] || fail "exit $WAIT_RC"
done
echo "model-load fault checks passed"
