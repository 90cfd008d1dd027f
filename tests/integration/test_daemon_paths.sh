#!/usr/bin/env bash
# Daemon paths no other test drives, through samdad with the demo model: a [site] naming a modality
# samda cannot segment is refused at configuration time; the sd_notify protocol (READY with STATUS
# and MAINPID, WATCHDOG pings at half the interval, RELOADING then READY on SIGHUP, STOPPING);
# max_wait forcing a series complete while series_idle would still wait; a series whose every
# instance came over an aborted association marked incomplete, no job; test-time adaptation
# through samdad: episodic (the job adapts a copy, no new version) and continual (a new adapter
# version made active: logged at warn, audited, counted in /metrics).
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
HERE=$(dirname "$0")

dport=$(free_port); hport=$(free_port)
model=("[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu")

# 1. A site that selects a modality samda cannot segment: refused, naming file, line and value.
write_conf "$T/bad.conf" "$dport" "$hport" "${model[@]}"
sed -i 's/^modalities = CT,MR/modalities = CT,US/' "$T/bad.conf"
! "$SAMDAD" --config "$T/bad.conf" --check-config >"$T/bad.out" 2>&1 || fail "modality US accepted"
line=$(grep -n '^modalities = CT,US' "$T/bad.conf" | cut -d: -f1)
grep -q "bad.conf:$line: \[site default\] modalities = US: US is not a modality samda segments (CT, MR)" "$T/bad.out" ||
  fail "refusal does not name file:line and value: $(cat "$T/bad.out")"
ok "[site] modalities = CT,US refused at file:line naming US"

# 2. samdad under a service manager: the default site's max_wait is 4 s (episodic TTA); site "cont"
#    (called AE SAMDA_CONT) adapts continually.
write_conf "$T/s.conf" "$dport" "$hport" "${model[@]}" \
  "[site cont]" "called_ae = SAMDA_CONT" "modalities = CT" "series_idle = 1s" "study_idle = 1s" "tta = continual"
sed -i 's/^max_wait = 1h/max_wait = 4s\ntta = episodic/' "$T/s.conf"
$PY "$HERE/notify_listen.py" "$T/notify.sock" "$T/notify.log" &
_pids+=($!)
wait_for_cmd 10 test -S "$T/notify.sock"
NOTIFY_SOCKET="$T/notify.sock" WATCHDOG_USEC=1000000 start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
pid=$(cat "$T/d.pid")
wait_for_text "$T/notify.log" "READY=1" 10
grep -q "READY=1 STATUS=.* MAINPID=$pid" "$T/notify.log" || fail "READY without STATUS and MAINPID: $(cat "$T/notify.log")"
sleep 2.5
n=$(grep -c "WATCHDOG=1" "$T/notify.log" || true)
[ "$n" -ge 3 ] || fail "$n watchdog pings in 2.5 s with WATCHDOG_USEC=1 s (one every 0.5 s expected)"
ok "sd_notify: READY=1 with STATUS and MAINPID=$pid; $n WATCHDOG=1 pings in ~2 s"
D="$T/data"; H="http://127.0.0.1:$hport"
admin=$("$SAMDA" token create ops --role admin --data-dir "$D" 2>/dev/null)

# 3. max_wait: the series' association stays open (its sender holds it for 8 s after the last
#    instance), so idleness cannot complete it; max_wait forces it complete after 4 s. Its job adapts
#    a copy of the adapter (episodic) and keeps none.
"$SAMDA" phantom --out "$T/ph" --site B --count 24 --seed 3 --slices-per-body 8 --dicom >/dev/null || fail "phantom"
t0=$(date +%s)
steps=()
for f in $(ls "$T/ph/dicom/B_00000"); do steps+=("store:$T/ph/dicom/B_00000/$f"); done
$PY "$HERE/dimse_raw.py" 127.0.0.1 "$dport" --calling STORESCU --called SAMDA "${steps[@]}" sleep:8 release >"$T/hold.out" &
hold=$!
series_state() { "$SAMDA" series --data-dir "$D" | json_expr "[(s['state'], s['reason']) for s in d if s['series_uid']=='$1'][0]"; }
uid0=$($PY -c "import pydicom,sys,os; d=sys.argv[1]; print(pydicom.dcmread(os.path.join(d, sorted(os.listdir(d))[0])).SeriesInstanceUID)" "$T/ph/dicom/B_00000")
wait_for_cmd 30 bash -c "'$SAMDA' series --data-dir '$D' | grep -q '\"complete: max_wait reached\"'"
dt=$(($(date +%s) - t0))
kill -0 "$hold" 2>/dev/null || fail "the sender's association ended before the series was forced complete"
[ "$dt" -le 8 ] || fail "forced complete after $dt s"
series_state "$uid0" | grep -q "max_wait" || fail "series: $(series_state "$uid0")"
wait "$hold" || fail "the holding sender: $(cat "$T/hold.out")"
[ "$(grep -c '"status": 0' "$T/hold.out")" = 8 ] || fail "8 instances not stored: $(cat "$T/hold.out")"
wait_for_cmd 300 bash -c "'$SAMDA' jobs --data-dir '$D' | $PY -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d and d[0][\"state\"] in (\"done\",\"failed\") else 1)'"
"$SAMDA" jobs --data-dir "$D" >"$T/jobs1.json"
json_expr 'd[0]["state"], d[0]["result"]["adapter"]["tta_mode"], "tta" in d[0]["result"]' <"$T/jobs1.json" | grep -qx "done episodic True" ||
  fail "episodic job: $(cat "$T/jobs1.json")"
[ "$(curl -sf -H "Authorization: Bearer $admin" "$H/api/v1/sites/default/adapters" | json_len)" = 0 ] || fail "episodic TTA kept a version"
ok "max_wait forced the series complete after ${dt} s while its association was still open; episodic TTA ran in its job and kept no version"

# 4. Every instance of a series over an aborted association: incomplete, no job.
aborted_dir="$T/ph/dicom/B_00001"
steps=()
for f in $(ls "$aborted_dir" | head -3); do steps+=("store:$aborted_dir/$f"); done
$PY "$HERE/dimse_raw.py" 127.0.0.1 "$dport" --calling STORESCU --called SAMDA "${steps[@]}" >"$T/abort.out" || true
grep -c '"status": 0' "$T/abort.out" | grep -qx 3 || fail "3 instances not stored: $(cat "$T/abort.out")"
uid1=$($PY -c "import pydicom,sys,os; d=sys.argv[1]; print(pydicom.dcmread(os.path.join(d, sorted(os.listdir(d))[0])).SeriesInstanceUID)" "$aborted_dir")
wait_for_cmd 30 bash -c "'$SAMDA' series --data-dir '$D' | $PY -c 'import json,sys; sys.exit(0 if [s for s in json.load(sys.stdin) if s[\"series_uid\"]==\"$uid1\" and s[\"state\"]==\"incomplete\"] else 1)'"
series_state "$uid1" | grep -q "every instance came over an aborted association" || fail "series: $(series_state "$uid1")"
[ "$("$SAMDA" jobs --data-dir "$D" | json_len)" = 1 ] || fail "a job for the aborted series"
grep -q 'msg="series incomplete: only aborted associations"' "$T/d.log" || fail "not logged"
ok "a series sent only over an aborted association: incomplete, logged, no job"

# 5. Continual TTA on site cont: its own adapter (the demo one, version 1, active); a series of it
#    adapts that adapter and keeps the result as version 2, active, at warn, audited, counted.
[ "$(code -X POST -H "Authorization: Bearer $admin" -H 'Content-Type: application/octet-stream' \
      --data-binary "@$DEMO/site_A_adapter.safetensors" "$H/api/v1/sites/cont/adapters")" = 201 ] || fail "upload: $(cat "$T/body")"
[ "$(code -X POST -H "Authorization: Bearer $admin" "$H/api/v1/sites/cont/adapters/1/activate")" = 200 ] || fail "activate: $(cat "$T/body")"
storescu -aet STORESCU -aec SAMDA_CONT 127.0.0.1 "$dport" +sd "$T/ph/dicom/B_00002" || fail "storescu cont"
wait_for_cmd 300 bash -c "'$SAMDA' jobs --data-dir '$D' | $PY -c 'import json,sys; d=[j for j in json.load(sys.stdin) if j[\"site\"]==\"cont\"]; sys.exit(0 if d and d[0][\"state\"] in (\"done\",\"failed\") else 1)'"
"$SAMDA" jobs --data-dir "$D" | json_expr '[j for j in d if j["site"]=="cont"][0]' >"$T/job_cont.txt"
tta=$("$SAMDA" jobs --data-dir "$D" | json_expr '[j for j in d if j["site"]=="cont"][0]["result"]["tta"]')
echo "continual TTA: $tta"
echo "$tta" | grep -q "'reverted': False" || fail "the adaptation was reverted by its guards: the continual path was not exercised ($tta)"
curl -sf -H "Authorization: Bearer $admin" "$H/api/v1/sites/cont/adapters" >"$T/ad.json"
json_expr '[(a["version"], a["active"], a["parent_version"]) for a in d]' <"$T/ad.json" | grep -q "(2, True, 1)" ||
  fail "no active version 2 with parent 1: $(cat "$T/ad.json")"
grep -q 'level=warn mod=worker msg="continual TTA: new adapter version active".* site=cont version=2 parent=1' "$T/d.log" ||
  fail "not logged at warn: $(grep continual "$T/d.log")"
"$SAMDA" audit --data-dir "$D" | json_expr '[(e["actor"], e["action"], e["details"]["origin"]) for e in d if e["action"].startswith("adapter.add")]' |
  grep -q "('system', 'adapter.add+activate', 'tta-continual')" || fail "not audited"
curl -sf "$H/metrics" | grep -qx "samda_tta_continual_versions_total 1" || fail "not counted: $(curl -sf "$H/metrics" | grep tta)"
ok "continual TTA: version 2 (parent 1) made active, logged at warn, audited as system, counted in /metrics"

# 6. Reload and stop, as a service manager sees them.
: >"$T/notify.log.mark"
kill -HUP "$pid"
wait_for_text "$T/d.log" 'msg="configuration reloaded"' 10
wait_for_cmd 10 bash -c "grep -A1000 RELOADING=1 '$T/notify.log' | grep -q 'READY=1'"
kill -TERM "$pid"; wait_exit "$pid" 30; [ "$WAIT_RC" = 0 ] || fail "exit $WAIT_RC"
grep -q "STOPPING=1" "$T/notify.log" || fail "no STOPPING=1: $(tail -3 "$T/notify.log")"
ok "SIGHUP: RELOADING=1 then READY=1; SIGTERM: STOPPING=1, exit 0"
