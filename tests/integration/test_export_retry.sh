#!/usr/bin/env bash
# Retry by hand (issue 15, item 2): two destinations whose storescp accepts CT but refuses the
# DICOM-SEG's SOP class fail the SEG for good (no automatic retry). GET /api/v1/exports and
# `samda exports` list both items as failed, with the cause; once the destinations are fixed, one
# is retried through POST /api/v1/exports/{id}/retry (admin, audited: the route and an export.retry
# entry) and the other with `samda exports retry ID` beside the running samdad; both SEGs arrive,
# once each.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }

"$SAMDA" phantom --out "$T/ph" --site A --count 16 --seed 23 --slices-per-body 16 --dicom >/dev/null || fail "phantom"
dport=$(free_port); hport=$(free_port); p1=$(free_port); p2=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu" \
  "[destination pacs]" "ae_title = PACS" "host = 127.0.0.1" "port = $p1" \
  "[destination pacs2]" "ae_title = PACS2" "host = 127.0.0.1" "port = $p2"
sed -i 's/^max_wait = 1h/max_wait = 1h\ndestinations = pacs, pacs2/' "$T/s.conf"
sed -i 's/^tick = 200ms/tick = 200ms\nexport_backoff = 1s\nexport_backoff_max = 2s/' "$T/s.conf"

# storescp with a negotiation profile that accepts CT only: the SEG's presentation context is refused
cat >"$T/ct_only.cfg" <<'CFG'
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = LittleEndianImplicit
[[PresentationContexts]]
[CTOnly]
PresentationContext1 = VerificationSOPClass\Uncompressed
PresentationContext2 = CTImageStorage\Uncompressed
[[Profiles]]
[CTOnly]
PresentationContexts = CTOnly
CFG
mkdir -p "$T/recv1" "$T/recv2"
start_storescp() { # NAME AE PORT DIR [profile args]
  local name=$1 ae=$2 port=$3 dir=$4; shift 4
  storescp "$@" -aet "$ae" -od "$dir" "$port" >"$T/$name.log" 2>&1 &
  _pids+=($!)
  echo $! >"$T/$name.pid"
  wait_for_cmd 10 echoscu -aet SAMDA -aec "$ae" 127.0.0.1 "$port"
}
start_storescp scp1 PACS "$p1" "$T/recv1" -xf "$T/ct_only.cfg" CTOnly
start_storescp scp2 PACS2 "$p2" "$T/recv2" -xf "$T/ct_only.cfg" CTOnly

start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
D="$T/data"; H="http://127.0.0.1:$hport"
admin=$("$SAMDA" token create ops --role admin --data-dir "$D" 2>/dev/null)
user=$("$SAMDA" token create viewer --role user --data-dir "$D" 2>/dev/null)
AA=(-H "Authorization: Bearer $admin"); UA=(-H "Authorization: Bearer $user")

storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00000" || fail "storescu"
wait_for_text "$T/d.log" 'msg="job done: DICOM-SEG recorded"' 240
wait_for_cmd 30 bash -c "[ \$(grep -c 'refused by the destination: failed (retry by hand)' '$T/d.log') = 2 ]"
grep 'refused by the destination' "$T/d.log" | head -1
sop=$(sqlite3 "$D/index.sqlite3" "SELECT seg_sop_uid FROM results")
rid=$(sqlite3 "$D/index.sqlite3" "SELECT id FROM results")
ok "the SEG was refused by both destinations (SOP class not accepted): failed, no automatic retry"

# the route lists them (admin only), with filters
[ "$(code "${UA[@]}" "$H/api/v1/exports")" = 403 ] || fail "a user token listed the export queue"
[ "$(code "${AA[@]}" "$H/api/v1/exports?state=failed")" = 200 ] || fail "GET exports: $(cat "$T/body")"
cp "$T/body" "$T/failed.json"
json_expr 'sorted((x["destination"], x["state"], x["permanent"], x["attempts"], x["result"], x["sop_uid"]) for x in d)' <"$T/failed.json" |
  grep -qxF "[('pacs', 'failed', True, 1, $rid, '$sop'), ('pacs2', 'failed', True, 1, $rid, '$sop')]" ||
  fail "failed items: $(cat "$T/failed.json")"
json_expr 'all("presentation context" in x["error"] for x in d)' <"$T/failed.json" | grep -qx True ||
  fail "the items do not say why they failed: $(cat "$T/failed.json")"
id1=$(json_expr '[x["id"] for x in d if x["destination"] == "pacs"][0]' <"$T/failed.json")
id2=$(json_expr '[x["id"] for x in d if x["destination"] == "pacs2"][0]' <"$T/failed.json")
[ "$(code "${AA[@]}" "$H/api/v1/exports?destination=pacs&result=$rid")" = 200 ] && json_expr '[x["id"] for x in d]' <"$T/body" | grep -qx "\[$id1\]" ||
  fail "filter by destination and result: $(cat "$T/body")"
[ "$(code "${AA[@]}" "$H/api/v1/exports?state=done")" = 200 ] && json_len <"$T/body" | grep -qx 0 || fail "done items: $(cat "$T/body")"
[ "$(code "${AA[@]}" "$H/api/v1/exports?destination=nowhere")" = 404 ] && grep -q "unknown destination nowhere" "$T/body" ||
  fail "unknown destination: $(cat "$T/body")"
[ "$(code "${AA[@]}" "$H/api/v1/exports?result=99999")" = 404 ] && grep -q "unknown result 99999" "$T/body" || fail "unknown result: $(cat "$T/body")"
[ "$(code "${AA[@]}" "$H/api/v1/exports?state=lost")" = 400 ] || fail "bad state: $(cat "$T/body")"
ok "GET /api/v1/exports: both items failed (permanent, with the cause, the result and SOP UID); filters; 403 for users; 404/400"

# the CLI lists the same, beside the running samdad
"$SAMDA" exports --state failed --data-dir "$D" >"$T/cli.json" || fail "samda exports"
json_expr 'sorted((x["id"], x["destination"], x["state"], x["permanent"]) for x in d)' <"$T/cli.json" |
  grep -qxF "[($id1, 'pacs', 'failed', True), ($id2, 'pacs2', 'failed', True)]" || fail "samda exports: $(cat "$T/cli.json")"
"$SAMDA" exports --destination pacs2 --data-dir "$D" | json_expr '[x["id"] for x in d]' | grep -qx "\[$id2\]" || fail "samda exports --destination"
rc=0; "$SAMDA" exports --state lost --data-dir "$D" >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 2 ] && grep -q "must be pending, sending, done or failed" "$T/err" || fail "samda exports --state lost: rc $rc $(cat "$T/err")"
ok "samda exports [--state failed | --destination pacs2] lists the same items; a bad state is refused"

sleep 3 # several export ticks and back-offs: a refused item stays failed until someone acts
[ -z "$(find "$T/recv1" "$T/recv2" -type f)" ] || fail "a refusing destination stored something"
[ "$(sqlite3 "$D/index.sqlite3" "SELECT group_concat(state || ':' || attempts) FROM exports")" = "failed:1,failed:1" ] ||
  fail "refused items were retried on their own: $(sqlite3 "$D/index.sqlite3" 'SELECT * FROM exports')"

# the destinations are fixed: storescp accepts every storage SOP class again
for n in 1 2; do kill "$(cat "$T/scp$n.pid")"; done
sleep 0.5
start_storescp scp1b PACS "$p1" "$T/recv1"
start_storescp scp2b PACS2 "$p2" "$T/recv2"

# retry through the route: users may not, admins may (audited)
[ "$(code -X POST "${UA[@]}" "$H/api/v1/exports/$id1/retry")" = 403 ] || fail "a user token retried an export"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/exports/$id1/retry")" = 200 ] || fail "retry: $(cat "$T/body")"
json_expr 'd["id"], d["destination"], d["state"] in ("pending", "sending", "done"), d["attempts"]' <"$T/body" | grep -qx "$id1 pacs True 0" ||
  fail "retried item: $(cat "$T/body")"
wait_for_cmd 30 test -f "$T/recv1/SG.$sop"
wait_for_cmd 10 bash -c "[ \"\$(sqlite3 '$D/index.sqlite3' 'SELECT state FROM exports WHERE id = $id1')\" = done ]"
[ "$(code "${AA[@]}" "$H/api/v1/exports?state=done")" = 200 ] && json_expr '[x["id"] for x in d]' <"$T/body" | grep -qx "\[$id1\]" ||
  fail "done after the retry: $(cat "$T/body")"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/exports/$id1/retry")" = 409 ] && grep -q "export $id1 is done" "$T/body" ||
  fail "retry of a done item: $(cat "$T/body")"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/exports/99999/retry")" = 404 ] && grep -q "unknown export 99999" "$T/body" ||
  fail "retry of an unknown item: $(cat "$T/body")"
ok "POST /api/v1/exports/$id1/retry (admin): pending again, delivered to pacs; done items 409, unknown 404, users 403"

"$SAMDA" audit --data-dir "$D" >"$T/audit.json"
admin_id=$("$SAMDA" token list --data-dir "$D" | awk '$2 == "ops" {print $1}')
user_id=$("$SAMDA" token list --data-dir "$D" | awk '$2 == "viewer" {print $1}')
$PY - "$T/audit.json" "$id1" "$admin_id" "$user_id" <<'PY' || fail "audit of the retry: $(cat "$T/audit.json")"
import json, sys
log, item, admin, user = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3], sys.argv[4]
route = [e for e in log if e["action"] == "http POST /api/v1/exports/{id}/retry" and e["resource"] == f"id={item}"
         and e["outcome"] != "denied"]
assert [(e["actor"], e["outcome"], e["details"]["http_status"]) for e in route] == \
    [(f"token:{admin}", "ok", 200), (f"token:{admin}", "error", 409)], route
denied = [e for e in log if e["action"] == "http POST /api/v1/exports/{id}/retry" and e["outcome"] == "denied"]
assert [(e["actor"], e["resource"], e["details"]["http_status"]) for e in denied] == [(f"token:{user}", f"id={item}", 403)], denied
retry = [e for e in log if e["action"] == "export.retry"]
assert [(e["actor"], e["outcome"], e["details"]) for e in retry] == \
    [(f"token:{admin}", "ok", {"item": item, "destination": "pacs", "was": "failed", "attempts": 1})], retry
listed = [e for e in log if e["action"] == "http GET /api/v1/exports"]
assert listed and all(e["actor"] == f"token:{admin}" or e["outcome"] == "denied" for e in listed), listed
sent = [e for e in log if e["action"] == "export.seg" and e["outcome"] == "ok"]
assert len(sent) == 1 and sent[0]["id"] > retry[0]["id"], sent
print("audited:", route[0]["action"], route[0]["actor"], "and export.retry", retry[0]["details"])
PY
ok "the retry is audited: the route (token, status) and export.retry (item, destination, state before); the send after it"

# retry with the CLI beside the running samdad: the exporter takes it up at its next tick
"$SAMDA" exports retry "$id2" --data-dir "$D" >"$T/cli_retry.json" 2>"$T/cli_retry.err" || fail "samda exports retry: $(cat "$T/cli_retry.err")"
json_expr 'd["id"], d["state"], d["attempts"]' <"$T/cli_retry.json" | grep -qx "$id2 pending 0" || fail "samda exports retry: $(cat "$T/cli_retry.json")"
wait_for_cmd 30 test -f "$T/recv2/SG.$sop"
wait_for_cmd 10 bash -c "[ \"\$(sqlite3 '$D/index.sqlite3' 'SELECT state FROM exports WHERE id = $id2')\" = done ]"
"$SAMDA" audit --data-dir "$D" | json_expr '[(e["actor"], e["details"]["item"]) for e in d if e["action"] == "export.retry"]' |
  grep -qxF "[('token:$admin_id', $id1), ('cli', $id2)]" || fail "CLI retry not audited"
rc=0; "$SAMDA" exports retry "$id2" --data-dir "$D" >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "export $id2 is done" "$T/err" || fail "samda exports retry of a done item: rc $rc $(cat "$T/err")"
ok "samda exports retry $id2 (audited as cli): delivered to pacs2 by the running samdad; a done item is refused"

sleep 2
[ "$(ls "$T/recv1" | wc -l)" = 1 ] && [ "$(ls "$T/recv2" | wc -l)" = 1 ] || fail "expected one SEG per destination: $(find "$T/recv1" "$T/recv2" -type f)"
"$SAMDA" check --data-dir "$D" >"$T/check.out" 2>&1 || fail "check: $(cat "$T/check.out")"
ok "one SEG at each destination; the data directory checks clean"
