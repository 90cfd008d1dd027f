#!/usr/bin/env bash
# The HTTP API against the real core: auth and roles, STOW-RS of the real MR series, QIDO-RS,
# WADO-RS, the change feed, jobs and on-demand segmentation, health and metrics, hostile input.
. "$(dirname "$0")/lib.sh"
MR="$FIXTURES/dicom/mr-brain-20"
[ -d "$MR" ] || { echo "SKIP: fixtures not found at $FIXTURES"; exit 77; }
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"'
D="$T/data"; H="http://127.0.0.1:$hport"
admin=$("$SAMDA" token create ops --role admin --data-dir "$D" 2>/dev/null)
user=$("$SAMDA" token create viewer --role user --data-dir "$D" 2>/dev/null)
ingest=$("$SAMDA" token create pacs --role ingest --data-dir "$D" 2>/dev/null)
[[ "$admin" == samda_* && "$user" == samda_* && "$ingest" == samda_* ]] || fail "token creation failed"
"$SAMDA" token list --data-dir "$D" | grep -q "viewer *user" || fail "token list"
! "$SAMDA" token list --data-dir "$D" | grep -q "$user" || fail "token list shows a secret"
ok "tokens created while samdad runs; list shows no secrets"

[ "$(code "$H/health")" = 200 ] || fail "health: $(cat "$T/body")"
json_expr 'd["checks"]["database"]["status"] if "checks" in d else d["database"]["status"]' <"$T/body" | grep -qx ok || fail "health body: $(cat "$T/body")"
json_expr 'd["checks"]["database"]["detail"]' <"$T/body" | grep -q '^SQLite 3\.' || fail "health names no index engine: $(cat "$T/body")"
[ "$(code "$H/metrics")" = 200 ] && grep -q '^samda_jobs{state="pending"} 0' "$T/body" || fail "metrics: $(head -c 300 "$T/body")"
ok "health and metrics without a token"

[ "$(code "$H/dicomweb/studies")" = 401 ] || fail "QIDO without token not 401"
[ "$(code -H "Authorization: Bearer samda_bogus" "$H/dicomweb/studies")" = 401 ] || fail "bogus token not 401"
[ "$(code -H "Authorization: Bearer $ingest" "$H/dicomweb/studies")" = 403 ] || fail "ingest role may query"
[ "$(code -H "Authorization: Bearer $user" "$H/dicomweb/studies")" = 200 ] || fail "user cannot query: $(cat "$T/body")"
ok "401 without or with a bad token, 403 for the wrong role, 200 for user"

out=$($PY "$(dirname "$0")/stow.py" "$H/dicomweb/studies" "$user" "$MR/brain_001.dcm")
[ "$(echo "$out" | head -1)" = 403 ] || fail "user may STOW: $out"
$PY "$(dirname "$0")/stow.py" "$H/dicomweb/studies" "$ingest" "$MR"/*.dcm >"$T/stow.out"
[ "$(head -1 "$T/stow.out")" = 200 ] || fail "STOW: $(head -c 400 "$T/stow.out")"
tail -n +2 "$T/stow.out" | json_expr 'len(d["00081199"]["Value"])' | grep -qx 20 || fail "ReferencedSOPSequence"
ok "STOW-RS of the 20-slice MR series: 200, 20 referenced instances"

# A STOW request is complete by itself: the job exists without waiting for idle timers.
"$SAMDA" jobs --data-dir "$D" | json_expr 'len([j for j in d if j["kind"]=="segment"])' | grep -qx 1 || fail "no job after STOW"
ok "STOW request is one unit of work: its series has a job at once"

A=(-H "Authorization: Bearer $user")
study=$(dcmdump -q +P 0020,000D "$MR/brain_001.dcm" | sed 's/.*\[\(.*\)\].*/\1/')
series=$(dcmdump -q +P 0020,000E "$MR/brain_001.dcm" | sed 's/.*\[\(.*\)\].*/\1/')
sop=$(dcmdump -q +P 0008,0018 "$MR/brain_001.dcm" | sed 's/.*\[\(.*\)\].*/\1/')
[ "$(code "${A[@]}" "$H/dicomweb/studies?StudyInstanceUID=$study")" = 200 ] || fail "QIDO study"
json_expr 'd[0]["00201208"]["Value"][0]' <"$T/body" | grep -qx 20 || fail "QIDO study instance count: $(cat "$T/body")"
[ "$(code "${A[@]}" "$H/dicomweb/studies/$study/series")" = 200 ] || fail "QIDO series"
json_expr 'd[0]["00080060"]["Value"][0]' <"$T/body" | grep -qx MR || fail "QIDO series modality"
[ "$(code "${A[@]}" "$H/dicomweb/studies/$study/series/$series/instances?limit=5&offset=2")" = 200 ] || fail "QIDO instances"
json_expr 'len(d)' <"$T/body" | grep -qx 5 || fail "QIDO limit/offset"
[ "$(code "${A[@]}" "$H/dicomweb/studies?PatientID=%27%3B%20DROP%20TABLE%20instances%3B--")" = 200 ] || fail "QIDO SQL metacharacters"
json_expr 'len(d)' <"$T/body" | grep -qx 0 || fail "SQL metacharacters matched something"
[ "$(code "${A[@]}" "$H/dicomweb/studies?ModalitiesInStudy=MR&limit=1")" = 200 ] || fail "QIDO modality"
ok "QIDO-RS: studies, series, instances with limit/offset; SQL metacharacters are just values"

[ "$(code "${A[@]}" "$H/dicomweb/studies/$study/series/$series/instances/$sop")" = 200 ] || fail "WADO instance"
cmp -s <($PY -c "
import sys,email
raw=open('$T/body','rb').read()
i=raw.index(b'\r\n\r\n'); j=raw.rindex(b'\r\n--')
sys.stdout.buffer.write(raw[i+4:j])") "$D/objects/$(cd "$D/objects" && grep -rlF "$sop" . | head -1)" || fail "WADO instance bytes differ from the stored file"
ok "WADO-RS instance: the stored file, byte for byte"

[ "$(code "${A[@]}" "$H/dicomweb/studies/..%2F..%2Fetc/series")" = 400 ] || fail "path traversal not refused: $(cat "$T/body")"
[ "$(code "${A[@]}" "$H/dicomweb/studies/1.2.3.4.5.6.7")" = 404 ] || fail "unknown study not 404"
grep -q '"type"' "$T/body" || fail "404 body is not a problem document"
[ "$(code -X POST -H "Authorization: Bearer $ingest" -H 'Content-Type: multipart/related; type="application/dicom"' --data-binary @"$MR/brain_002.dcm" "$H/dicomweb/studies")" = 400 ] || fail "missing boundary not 400"
[ "$(code -X POST -H "Authorization: Bearer $ingest" -H 'Content-Type: application/json' -d '{}' "$H/dicomweb/studies")" = 415 ] || fail "wrong content type not 415"
ok "hostile input: traversal 400, unknown UID 404 problem+json, bad multipart 400, wrong type 415"

[ "$(code "${A[@]}" "$H/api/v1/changes?since=0&limit=1000")" = 200 ] || fail "changes"
json_expr 'sum(1 for c in d["changes"] if c["kind"]=="instance")' <"$T/body" | grep -qx 20 || fail "change feed instances"
ok "change feed lists the 20 new instances"

B=(-H "Authorization: Bearer $admin" -H 'Content-Type: application/json')
[ "$(code -X POST "${B[@]}" -d '{"transaction_id":"tx-1"}' "$H/api/v1/studies/$study/segment")" = 202 ] || fail "segment: $(cat "$T/body")"
j1=$(json_expr 'd["id"]' <"$T/body")
[ "$(code -X POST "${B[@]}" -d '{"transaction_id":"tx-1"}' "$H/api/v1/studies/$study/segment")" = 202 ] || fail "segment again"
[ "$(json_expr 'd["id"]' <"$T/body")" = "$j1" ] || fail "same transaction id gave another job"
[ "$(code -X POST "${B[@]}" "$H/api/v1/jobs/$j1/cancel")" = 200 ] || fail "cancel: $(cat "$T/body")"
json_expr 'd["state"]' <"$T/body" | grep -qx cancelled || fail "not cancelled"
[ "$(code -X POST "${B[@]}" "$H/api/v1/jobs/$j1/retry")" = 200 ] || fail "retry: $(cat "$T/body")"
json_expr 'd["state"]' <"$T/body" | grep -qx pending || fail "not pending after retry"
[ "$(code "${A[@]}" "$H/api/v1/jobs?state=pending")" = 200 ] && json_expr 'len(d)' <"$T/body" | grep -qx 2 || fail "jobs list"
[ "$(code "${A[@]}" "$H/api/v1/studies/$study/results")" = 200 ] || fail "results: $(cat "$T/body")"
ok "on-demand segmentation is idempotent per transaction id; cancel and retry; job list; results"

"$SAMDA" audit --data-dir "$D" >"$T/audit.json"
json_expr 'sum(1 for e in d if e["action"].startswith("http ") and e["actor"].startswith("token:"))' <"$T/audit.json" | grep -qv '^0$' || fail "no HTTP audit entries"
json_expr 'sum(1 for e in d if e["outcome"]=="denied")' <"$T/audit.json" | grep -qv '^0$' || fail "denied requests not audited"
ok "audit log records HTTP access with token ids, denials included"
kill -TERM "$(cat "$T/d.pid")"; wait_exit "$(cat "$T/d.pid")" 15; [ "$WAIT_RC" = 0 ] || fail "exit $WAIT_RC"
echo "all HTTP API checks passed"
