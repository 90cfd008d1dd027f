#!/usr/bin/env bash
# Retention (issue 20): a site keeps its received series for retain_source after every destination
# received their results, and no longer; a series whose result was not delivered stays; admins delete
# a study or one of its series (DELETE /api/v1/studies/..., role admin, audited, 409 while busy is
# retried, 404 for a series of another study); [storage] quota, reloaded with SIGHUP, makes
# POST /api/v1/retention/run delete what was delivered, oldest first; /metrics counts it; the data
# directory checks clean after each step.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
"$SAMDA" phantom --out "$T/ph" --site A --count 48 --seed 23 --slices-per-body 16 --dicom >/dev/null || fail "phantom"
dport=$(free_port); hport=$(free_port); pport=$(free_port)
conf() {
  write_conf "$T/s.conf" "$dport" "$hport" \
    "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu" \
    "[destination pacs]" "ae_title = PACS" "host = 127.0.0.1" "port = $pport"
  sed -i "s/^max_wait = 1h/max_wait = 1h\ndestinations = pacs\nretain_source = $1/; s/^min_free = 1MiB/min_free = 1MiB\nretention_interval = 1s\nquota = $2/" "$T/s.conf"
  sed -i 's/^tick = 200ms/tick = 200ms\nexport_backoff = 1s\nexport_backoff_max = 2s/' "$T/s.conf"
}
conf 3s 0
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
D="$T/data"; H="http://127.0.0.1:$hport"
admin=$("$SAMDA" token create ops --role admin --data-dir "$D" 2>/dev/null)
user=$("$SAMDA" token create viewer --role user --data-dir "$D" 2>/dev/null)
A=(-H "Authorization: Bearer $admin"); U=(-H "Authorization: Bearer $user")
study_of() { $PY -c "import pydicom,sys,os; d=sys.argv[1]; f=pydicom.dcmread(os.path.join(d, sorted(os.listdir(d))[0])); print(f.StudyInstanceUID, f.SeriesInstanceUID)" "$1"; }
read -r s0 ct0 < <(study_of "$T/ph/dicom/A_00000")
read -r s1 ct1 < <(study_of "$T/ph/dicom/A_00001")
read -r s2 ct2 < <(study_of "$T/ph/dicom/A_00002")
modalities() { curl -sf "${A[@]}" "$H/dicomweb/studies/$1/series" | json_expr 'sorted(s["00080060"]["Value"][0] for s in d)' 2>/dev/null || echo "[]"; }
jobs_done() { [ "$(grep -c 'msg="job done: DICOM-SEG recorded"' "$T/d.log")" -ge "$1" ]; }
check_clean() { "$SAMDA" check --data-dir "$D" >"$T/check.out" 2>&1 || fail "samda check after $1: $(cat "$T/check.out")"; }

# delivered means recorded as done (the PACS has the file a moment before samdad records it)
delivered() { curl -sf -H "Authorization: Bearer $admin" "$H/api/v1/exports?state=done" |
  $PY -c 'import json,sys; d=json.load(sys.stdin); d=d.get("exports", d) if isinstance(d, dict) else d; sys.exit(0 if len(d) >= int(sys.argv[1]) else 1)' "$1"; }
# study 0: delivered; study 1: its SEG waits for a destination that is down
mkdir -p "$T/recv"
storescp -aet PACS -od "$T/recv" "$pport" >"$T/storescp.log" 2>&1 &
scp=$!; _pids+=($scp)
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00000" || fail "storescu 0"
wait_for_cmd 240 jobs_done 1
wait_for_cmd 60 bash -c "[ \$(ls '$T/recv' | wc -l) -ge 1 ]"
wait_for_cmd 60 delivered 1 || fail "study 0's SEG was not delivered"
kill -9 "$scp"; wait "$scp" 2>/dev/null || true
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00001" || fail "storescu 1"
wait_for_cmd 240 jobs_done 2
ok "study 0 segmented and its SEG delivered; study 1 segmented, its SEG not delivered (destination down)"

# retain_source = 3s: study 0's CT goes, its SEG stays; study 1 keeps everything
wait_for_cmd 30 bash -c "[ \"\$(curl -sf -H 'Authorization: Bearer $admin' '$H/dicomweb/studies/$s0/series' | $PY -c 'import json,sys; print(sorted(s[\"00080060\"][\"Value\"][0] for s in json.load(sys.stdin)))')\" = \"['SEG']\" ]" ||
  fail "study 0 after retention: $(modalities "$s0")"
sleep 2
[ "$(modalities "$s1")" = "['CT', 'SEG']" ] || fail "study 1 (not delivered) lost something: $(modalities "$s1")"
curl -sf "$H/metrics" >"$T/m1"
grep -q '^samda_retention_deleted_series_total 1$' "$T/m1" || fail "metrics: $(grep retention "$T/m1")"
grep -Eq '^samda_retention_freed_bytes_total [1-9]' "$T/m1" || fail "freed bytes: $(grep retention "$T/m1")"
grep -Eq '^samda_store_bytes [1-9]' "$T/m1" || fail "store bytes"
"$SAMDA" audit --data-dir "$D" | json_expr '[(a["actor"], a["action"]) for a in d if a["action"].endswith(".delete")]' |
  grep -qxF "[('retention', 'series.delete')]" || fail "audit: $("$SAMDA" audit --data-dir "$D" | tail -c 600)"
check_clean "retention by age"
ok "retain_source: study 0's delivered source series deleted (audited, counted in /metrics), its SEG kept; study 1 untouched"

# DELETE by an administrator
[ "$(code -X DELETE "${U[@]}" "$H/api/v1/studies/$s1")" = 403 ] || fail "a user deleted a study: $(cat "$T/body")"
[ "$(code -X DELETE "${A[@]}" "$H/api/v1/studies/$s0/series/$ct1")" = 404 ] || fail "series of another study: $(cat "$T/body")"
grep -q "$ct1" "$T/body" || fail "the 404 should name the series: $(cat "$T/body")"
[ "$(code -X DELETE "${A[@]}" "$H/api/v1/studies/1.2.3.4.5")" = 404 ] || fail "unknown study"
for i in 1 2 3 4 5 6 7 8 9 10; do
  c=$(code -X DELETE "${A[@]}" "$H/api/v1/studies/$s1")
  [ "$c" = 409 ] || break   # its SEG may be in the middle of an attempt to the down destination
  sleep 0.5
done
[ "$c" = 200 ] || fail "DELETE study 1: $c $(cat "$T/body")"
json_expr '(d["deleted"]["series"], d["deleted"]["instances"], d["deleted"]["results"])' <"$T/body" | grep -qxF "(2, 17, 1)" ||
  fail "DELETE report: $(cat "$T/body")"
[ "$(code "${A[@]}" "$H/dicomweb/studies?StudyInstanceUID=$s1")" = 200 ] && [ "$(json_len <"$T/body")" = 0 ] || fail "study 1 still listed"
curl -sf "${A[@]}" "$H/api/v1/exports" | json_expr 'len(d["exports"]) if isinstance(d, dict) else len(d)' | grep -qx 1 ||
  fail "export items: $(curl -sf "${A[@]}" "$H/api/v1/exports")"
"$SAMDA" audit --data-dir "$D" | json_expr '[a["action"] for a in d if a["action"] in ("study.delete", "DELETE /api/v1/studies/{study}")]' >"$T/aud"
grep -q "study.delete" "$T/aud" || fail "audit of the DELETE: $(cat "$T/aud")"
check_clean "DELETE"
ok "DELETE /api/v1/studies/{study}: admin only (403 for a user), 404 naming a series of another study, study 1 gone with its SEG and export item"

# quota: study 2 delivered, then quota = 1 byte through SIGHUP: everything delivered goes, oldest first
storescp -aet PACS -od "$T/recv" "$pport" >"$T/storescp.log" 2>&1 &
_pids+=($!)
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00002" || fail "storescu 2"
wait_for_cmd 240 jobs_done 3
wait_for_cmd 60 delivered 2 || fail "study 2's SEG was not delivered: $(curl -sf "${A[@]}" "$H/api/v1/exports")"
conf 0 1
kill -HUP "$(cat "$T/d.pid")"
wait_for_text "$T/d.log" 'reloaded' 20
[ "$(code -X POST "${A[@]}" "$H/api/v1/retention/run")" = 200 ] || fail "retention run: $(cat "$T/body")"
cp "$T/body" "$T/run.json"
echo "retention run: $(cat "$T/run.json")"
json_expr '(d["by"]["quota"]["series"] >= 2, d["over_quota"], d["bytes_stored"])' <"$T/run.json" | grep -qxF "(True, False, 0)" ||
  fail "quota pass: $(cat "$T/run.json")"
[ "$(modalities "$s2")" = "[]" ] && [ "$(modalities "$s0")" = "[]" ] || fail "after the quota pass: $(modalities "$s0") $(modalities "$s2")"
check_clean "quota"
ok "[storage] quota (SIGHUP): POST /api/v1/retention/run deleted every delivered series, 0 bytes left, the data directory checks clean"
