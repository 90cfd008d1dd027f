#!/usr/bin/env bash
# Routing rules ([routing], [rule NAME]) end to end with the shipped demo model. A bad expression is
# refused by --check-config with file:line, the rule's name and the column. A CT series whose
# SeriesDescription says ARTERIAL is routed by its rule to [site abdomen] (the [model] adapter), with
# the rule's labels (liver, spleen), outputs (seg,rtstruct,sr), priority (urgent) and destinations:
# a C-STORE PACS (storescp) and a STOW-RS PACS (Orthanc's DICOMweb plugin). At both the SEG, the
# RTSTRUCT and the SR are in the source's study, free of dciodvfy errors; the RTSTRUCT's contours
# agree with the SEG (Dice >= 0.95 per label) and the SR's volumes with the SEG's voxel counts
# (rtstruct_tool.py). A series no rule matches gets no job with [routing] unmatched = skip, and
# POST /api/v1/rules/test explains both decisions (every test with the value it saw). After a
# SIGHUP the rule requires a VENOUS series of the same study: an ARTERIAL series alone is held (no
# job; rules/test says waiting, naming what is missing), and its job is queued once the study's
# VENOUS series completes (its recorded reason says so). retain_source (another SIGHUP) then deletes the two source series whose
# results reached both of their rule's destinations, deleting the studies (DELETE
# /api/v1/studies/{uid}) frees the rest, and `samda check` finds the data directory clean each time.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || { echo "SKIP: orthanc-dicomweb missing"; exit 77; }
TOOL="$SAMDA_SOURCE_DIR/tests/unit/dicom/rtstruct_tool.py"

"$SAMDA" phantom --out "$T/ph" --site A --count 48 --seed 41 --slices-per-body 16 --dicom >/dev/null || fail "phantom"
# series named by their SeriesDescription (dcmodify on copies): ART (study 0), PLAIN (study 1),
# ART2 (study 2) and VEN2, a second series of study 2 (new SeriesInstanceUID, same study)
describe() {
  mkdir -p "$2"
  [ -n "$(ls "$2")" ] || cp "$1"/* "$2"/
  dcmodify -nb -m "(0008,103e)=$3" "$2"/* >/dev/null || fail "dcmodify $2"
}
describe "$T/ph/dicom/A_00000" "$T/art" "CT ABDOMEN ARTERIAL"
describe "$T/ph/dicom/A_00001" "$T/plain" "CT ABDOMEN PLAIN"
describe "$T/ph/dicom/A_00002" "$T/art2" "CT LIVER ARTERIAL PHASE"
copy_series "$T/ph/dicom/A_00002" "$T/ven2"
uids() { $PY -c "import pydicom,sys,os; d=sys.argv[1]; f=pydicom.dcmread(os.path.join(d, sorted(os.listdir(d))[0])); print(f.StudyInstanceUID, f.SeriesInstanceUID)" "$1"; }
read -r s0 art < <(uids "$T/art")
read -r s1 plain < <(uids "$T/plain")
read -r s2 art2 < <(uids "$T/art2")
dcmodify -nb -m "(0020,000d)=$s2" "$T/ven2"/* >/dev/null || fail "dcmodify study of VEN2"
describe "$T/ven2" "$T/ven2" "CT LIVER PORTAL VENOUS"
read -r s2v ven2 < <(uids "$T/ven2")
[ "$s2v" = "$s2" ] && [ "$ven2" != "$art2" ] || fail "VEN2 must be another series of study $s2"

dport=$(free_port); hport=$(free_port); pport=$(free_port); ohttp=$(free_port); odicom=$(free_port)
# conf REQUIRES: the configuration; with REQUIRES, rule arterial waits for such a series of the study
conf() {
  local req=()
  [ -n "${1:-}" ] && req=("requires = $1" "requires_timeout = 10m")
  write_conf "$T/s.conf" "$dport" "$hport" \
    "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu" \
    "[destination pacs]" "ae_title = PACS" "host = 127.0.0.1" "port = $pport" \
    "[destination web]" "url = http://127.0.0.1:$ohttp/dicom-web/" \
    "[site abdomen]" "modalities = CT" "series_idle = 1s" "study_idle = 1s" \
    "[routing]" "mode = first" "unmatched = skip" "off_peak = 20:00-06:00" \
    "[rule arterial]" 'match = Modality = CT and SeriesDescription like "*ARTERIAL*"' "site = abdomen" \
    "labels = liver,spleen" "outputs = seg,rtstruct,sr" "destinations = pacs,web" "priority = urgent" "${req[@]}" \
    "[rule neuro]" 'match = Modality = MR and (BodyPartExamined in (HEAD, BRAIN) or StudyDescription matches "^NEURO")' \
    "[rule thin]" "match = SliceThickness < 0.5 and Rows >= 1024 and SeriesDescription not in (SCOUT, LOCALIZER)" \
    "priority = off-peak"
  sed -i 's/^tick = 200ms/tick = 200ms\nexport_backoff = 1s\nexport_backoff_max = 2s/' "$T/s.conf"
}
conf ""
"$SAMDAD" --config "$T/s.conf" --check-config >"$T/check.out" 2>&1 || fail "the configuration: $(cat "$T/check.out")"

# 1. bad expressions are refused before anything starts: file:line, the rule, the column
bad() { # SED-EXPR EXPECTED-LINE-REGEX EXPECTED-MESSAGE-FIXED
  sed "$1" "$T/s.conf" >"$T/bad.conf"
  out=$("$SAMDAD" --config "$T/bad.conf" --check-config 2>&1) && fail "accepted: $(grep -E "$2" "$T/bad.conf")"
  local line
  line=$(grep -nE "$2" "$T/bad.conf" | head -1 | cut -d: -f1)
  echo "$out" | grep -qF "bad.conf:$line: $3" || fail "bad expression message (line $line): $out"
  echo "$out" | grep -o 'bad.conf:.*' | head -1
}
m1=$(bad 's/^match = Modality = CT and SeriesDescription like.*/match = SeriesDescription like/' '^match = SeriesDescription like$' \
  '[rule arterial] match = SeriesDescription like: column 23: a value')
m2=$(bad 's/^match = SliceThickness.*/match = Foo = 1/' '^match = Foo = 1$' "[rule thin] match = Foo = 1: column 1: unknown attribute 'Foo'")
m3=$(bad 's/^priority = urgent$/priority = urgent\nrequires = SeriesDescription like "*VENOUS*", (Rows > 2/' '^requires = ' \
  '[rule arterial] requires = (Rows > 2: column ')
ok "bad expressions refused by --check-config: $m1 | $m2 | $m3"

# the peers: a C-STORE PACS and a STOW-RS PACS (Orthanc, DICOMweb plugin)
mkdir -p "$T/recv"
storescp -aet PACS -od "$T/recv" "$pport" >"$T/storescp.log" 2>&1 &
_pids+=($!)
start_orthanc orthanc "$ohttp" "$odicom" "$dport" web
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
D="$T/data"; H="http://127.0.0.1:$hport"
admin=$("$SAMDA" token create ops --role admin --data-dir "$D" 2>/dev/null)
user=$("$SAMDA" token create viewer --role user --data-dir "$D" 2>/dev/null)
A=(-H "Authorization: Bearer $admin"); U=(-H "Authorization: Bearer $user")

curl -sf "${A[@]}" "$H/api/v1/rules" >"$T/rules.json" || fail "GET /api/v1/rules"
$PY - "$T/rules.json" <<'PY' || fail "GET /api/v1/rules: $(cat "$T/rules.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert (d["mode"], d["unmatched"], d["off_peak"]) == ("first", "skip", "20:00-06:00"), d
assert isinstance(d["off_peak_open"], bool), d
assert [r["name"] for r in d["rules"]] == ["arterial", "neuro", "thin"], d
a = d["rules"][0]
assert a["site"] == "abdomen" and a["labels"] == ["liver", "spleen"] and a["outputs"] == ["seg", "rtstruct", "sr"], a
assert a["destinations"] == ["pacs", "web"] and a["priority"] == "urgent" and a.get("requires") is None, a
assert d["rules"][2]["priority"] == "off-peak", d["rules"][2]
PY
ok "GET /api/v1/rules lists [routing] and the three rules in file order"

# 2. ARTERIAL is routed to [site abdomen]; PLAIN matches no rule
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/art" || fail "storescu ART"
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/plain" || fail "storescu PLAIN"
wait_for_text "$T/d.log" 'msg="job done: DICOM-SEG recorded"' 240
grep 'msg="series complete, job queued"' "$T/d.log" | grep -q 'site=abdomen rule=arterial priority=8' ||
  fail "queued log line: $(grep 'job queued' "$T/d.log")"
curl -sf "${U[@]}" "$H/api/v1/jobs" >"$T/jobs.json" || fail "GET /api/v1/jobs"
$PY - "$T/jobs.json" "$art" <<'PY' || fail "jobs: $(cat "$T/jobs.json")"
import json, sys
d = json.load(open(sys.argv[1])); d = d.get("jobs", d) if isinstance(d, dict) else d
assert len(d) == 1, "one job expected, got %d" % len(d)
j = d[0]
p = j["params"] if isinstance(j["params"], dict) else json.loads(j["params"])
assert j["series_uid"] == sys.argv[2] and j["site"] == "abdomen" and j["priority"] == 8, j
assert p["rule"] == "arterial" and p["labels"] == ["liver", "spleen"], p
assert p["outputs"] == ["seg", "rtstruct", "sr"] and p["destinations"] == ["pacs", "web"], p
PY
ok "ARTERIAL: one job, site abdomen, priority 8 (urgent), params name rule arterial with its labels, outputs, destinations"

exports_done() { curl -sf "${A[@]}" "$H/api/v1/exports" |
  $PY -c 'import json,sys; d=json.load(sys.stdin); d=d.get("exports", d) if isinstance(d, dict) else d; sys.exit(0 if len(d) >= int(sys.argv[1]) and all(e["state"] == "done" for e in d) and {e["destination"] for e in d} == {"pacs", "web"} else 1)' "$1"; }
wait_for_cmd 120 exports_done 2 || fail "exports: $(curl -sf "${A[@]}" "$H/api/v1/exports")"
ok "every export to pacs (C-STORE) and web (STOW-RS) is done"

# what each PACS got: one SEG, one RTSTRUCT, one SR, in the source's study
classify() { # DIR PREFIX: sets PREFIX_SEG, PREFIX_RT, PREFIX_SR
  eval "$($PY - "$1" "$2" "$s0" <<'PY'
import os, sys, pydicom
kinds = {"1.2.840.10008.5.1.4.1.1.66.4": "SEG", "1.2.840.10008.5.1.4.1.1.481.3": "RT",
         "1.2.840.10008.5.1.4.1.1.88.34": "SR"}
seen = {}
for f in sorted(os.listdir(sys.argv[1])):
    p = os.path.join(sys.argv[1], f)
    ds = pydicom.dcmread(p, stop_before_pixels=True)
    k = kinds.get(ds.SOPClassUID, "OTHER")
    if ds.StudyInstanceUID != sys.argv[3]:
        sys.exit("%s: study %s, not %s" % (f, ds.StudyInstanceUID, sys.argv[3]))
    seen.setdefault(k, []).append(p)
if sorted(seen) != ["RT", "SEG", "SR"] or any(len(v) != 1 for v in seen.values()):
    sys.exit("not one SEG, RTSTRUCT and SR: %s" % seen)
for k, v in seen.items():
    print("%s_%s='%s'" % (sys.argv[2], k, v[0]))
PY
)" || fail "objects in $1: $(ls "$1")"
}
wait_for_cmd 60 bash -c "[ \$(ls '$T/recv' | wc -l) -ge 3 ]"
sleep 1
classify "$T/recv" PACS
O="http://127.0.0.1:$ohttp"
curl -sf "$O/tools/find" -d "{\"Level\":\"Instance\",\"Query\":{\"StudyInstanceUID\":\"$s0\"}}" >"$T/o.json" || fail "Orthanc find"
mkdir -p "$T/web"
for id in $(json_expr '" ".join(d)' <"$T/o.json"); do
  curl -sf "$O/instances/$id/file" -o "$T/web/$id.dcm" || fail "Orthanc instance $id"
done
classify "$T/web" WEB
for f in "$PACS_SEG" "$PACS_RT" "$PACS_SR" "$WEB_SEG" "$WEB_RT" "$WEB_SR"; do
  errs=$(dciodvfy "$f" 2>&1 | grep '^Error' || true)
  [ -z "$errs" ] || fail "dciodvfy $f: $errs"
done
$PY - "$PACS_SEG" "$PACS_RT" "$PACS_SR" "$WEB_SEG" "$WEB_RT" "$WEB_SR" <<'PY' || fail "the two PACS got different objects"
import sys, pydicom
a = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in sys.argv[1:4]]
b = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in sys.argv[4:7]]
assert a == b, (a, b)
seg = pydicom.dcmread(sys.argv[1], stop_before_pixels=True)
assert [x.SegmentLabel for x in seg.SegmentSequence] == ["liver", "spleen"], seg.SegmentSequence
assert "site abdomen" in seg.SeriesDescription, seg.SeriesDescription
PY
ok "both PACS (storescp, Orthanc by STOW-RS) hold the same SEG, RTSTRUCT and SR in study $s0; dciodvfy finds no error; the SEG (site abdomen) has the rule's labels, liver and spleen"

CT=("$T/art"/*)
for who in PACS WEB; do
  seg=${who}_SEG rt=${who}_RT sr=${who}_SR
  $PY "$TOOL" rtstruct "${!rt}" "${!seg}" "${CT[@]}" >"$T/rt.$who.txt" || fail "$who RTSTRUCT: $(cat "$T/rt.$who.txt")"
  $PY - "$T/rt.$who.txt" <<'PY' || fail "$who RTSTRUCT against the SEG: $(cat "$T/rt.$who.txt")"
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.startswith("roi ")]
names = sorted(r[1] for r in rows)
assert names == ["liver", "spleen"], "the rule's labels are liver,spleen: %s" % names
for r in rows:
    dice, voxels = float(r[9]), int(r[7])
    assert voxels > 0, "%s: empty in the SEG" % r[1]
    assert dice >= 0.95, "%s: Dice %.4f" % (r[1], dice)
PY
  $PY "$TOOL" sr "${!sr}" "${!seg}" "${CT[@]}" >"$T/sr.$who.txt" || fail "$who SR: $(cat "$T/sr.$who.txt")"
  [ "$(grep '^group ' "$T/sr.$who.txt" | awk '{print $2}' | sort | tr '\n' ' ')" = "liver spleen " ] ||
    fail "$who SR groups (labels = liver,spleen): $(cat "$T/sr.$who.txt")"
done
cat "$T/rt.PACS.txt" "$T/sr.PACS.txt"
ok "at both PACS: RTSTRUCT contours agree with the SEG (Dice >= 0.95, labels liver and spleen only); SR volumes = SEG voxels x voxel volume"

# 3. PLAIN: no rule matches, unmatched = skip: no job
wait_for_text "$T/d.log" 'msg="series complete, not segmented"' 30
grep 'msg="series complete, not segmented"' "$T/d.log" | grep -q 'no \[rule\] matches (\[routing\] unmatched = skip)' ||
  fail "not-segmented reason: $(grep 'not segmented' "$T/d.log")"
[ "$(curl -sf "${U[@]}" "$H/api/v1/jobs" | json_expr 'len(d.get("jobs", d) if isinstance(d, dict) else d)')" = 1 ] ||
  fail "PLAIN got a job: $(curl -sf "${U[@]}" "$H/api/v1/jobs")"
rtest() { code -X POST "${A[@]}" -H 'Content-Type: application/json' -d "{\"series_uid\":\"$1\"}" "$H/api/v1/rules/test"; }
[ "$(rtest "$plain")" = 200 ] || fail "rules/test PLAIN: $(cat "$T/body")"
cp "$T/body" "$T/test.plain.json"
$PY - "$T/test.plain.json" "$plain" <<'PY' || fail "rules/test PLAIN: $(cat "$T/test.plain.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["series_uid"] == sys.argv[2] and d["mode"] == "first" and d["state"] == "complete", d
assert d["attributes"]["SeriesDescription"] == "CT ABDOMEN PLAIN" and d["attributes"]["Modality"] == "CT", d["attributes"]
assert [r["name"] for r in d["rules"]] == ["arterial", "neuro", "thin"], d["rules"]
assert all(r["matched"] is False for r in d["rules"]), d["rules"]
assert d["jobs"] == [] and "no [rule] matches" in d["reason"], (d["jobs"], d["reason"])
t = {x["test"]: x for x in d["rules"][0]["tests"]}
sd = [x for k, x in t.items() if k.startswith("SeriesDescription like")]
assert sd and sd[0]["value"] == "CT ABDOMEN PLAIN" and sd[0]["result"] is False, t
assert any(x["value"] == "CT" and x["result"] for k, x in t.items() if k.startswith("Modality")), t
print("PLAIN:", d["reason"], "|", "; ".join("%s [%s] -> %s" % (x["test"], x["value"], x["result"]) for x in d["rules"][0]["tests"]))
PY
[ "$(rtest "$art")" = 200 ] || fail "rules/test ART: $(cat "$T/body")"
cp "$T/body" "$T/test.art.json"
$PY - "$T/test.art.json" <<'PY' || fail "rules/test ART: $(cat "$T/test.art.json")"
import json, sys
d = json.load(open(sys.argv[1]))
r = d["rules"][0]
assert r["name"] == "arterial" and r["matched"] is True and all(t["result"] for t in r["tests"]), r
assert all(x.get("matched") is not True for x in d["rules"][1:]), d["rules"]  # mode = first: the rest not evaluated
assert len(d["jobs"]) == 1, d["jobs"]
j = d["jobs"][0]
assert (j["rule"], j["site"], j["priority"], j["waiting"]) == ("arterial", "abdomen", "urgent", False), j
assert j["outputs"] == ["seg", "rtstruct", "sr"] and j["destinations"] == ["pacs", "web"] and j["labels"] == ["liver", "spleen"], j
PY
[ "$(rtest 1.2.3.4.5.6.7)" = 404 ] || fail "rules/test of an unknown series: $(cat "$T/body")"
[ "$(code -X POST "${A[@]}" -H 'Content-Type: application/json' -d '{"series":"1.2.3"}' "$H/api/v1/rules/test")" = 400 ] ||
  fail "rules/test with a bad body: $(cat "$T/body")"
[ "$(code -X POST "${U[@]}" -H 'Content-Type: application/json' -d "{\"series_uid\":\"$art\"}" "$H/api/v1/rules/test")" = 403 ] ||
  fail "rules/test as a user: $(cat "$T/body")"
ok "PLAIN: no job (log: not segmented, no [rule] matches); rules/test shows every rule unmatched with its tests' values, ART matched by arterial; 404/400/403"

# 4. study-level trigger (SIGHUP): arterial now requires a VENOUS series of the study
conf 'SeriesDescription like "*VENOUS*", Modality in (CT, MR)'
kill -HUP "$(cat "$T/d.pid")"
wait_for_text "$T/d.log" 'msg="configuration reloaded"' 20
curl -sf "${A[@]}" "$H/api/v1/rules" | json_expr '(d["rules"][0]["requires"], d["rules"][0]["requires_timeout_s"])' |
  grep -qxF "('SeriesDescription like \"*VENOUS*\", Modality in (CT, MR)', 600)" || fail "rules after reload: $(curl -sf "${A[@]}" "$H/api/v1/rules")"
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/art2" || fail "storescu ART2"
series_state() { # STUDY SERIES: "state|reason" from GET /api/v1/studies/{study}/results
  curl -sf "${U[@]}" "$H/api/v1/studies/$1/results" |
    $PY -c 'import json,sys; d=json.load(sys.stdin); print(*["%s|%s" % (s["state"], s["reason"]) for s in d["series"] if s["series_uid"] == sys.argv[1]])' "$2"; }
wait_for_cmd 30 bash -c "curl -sf -H 'Authorization: Bearer $user' '$H/api/v1/studies/$s2/results' | grep -q '\"complete\"'"
sleep 2 # a few scheduler ticks: a held series must stay without a job
echo "ART2: $(series_state "$s2" "$art2")"
series_state "$s2" "$art2" | grep -q '^complete|.*arterial (waiting)' || fail "ART2 state: $(series_state "$s2" "$art2")"
[ "$(grep -c 'msg="series complete, job queued"' "$T/d.log")" = 1 ] || fail "ART2 queued before VENOUS: $(grep 'job queued' "$T/d.log")"
[ "$(curl -sf "${U[@]}" "$H/api/v1/jobs" | json_expr 'len(d.get("jobs", d) if isinstance(d, dict) else d)')" = 1 ] ||
  fail "ART2 got a job before VENOUS: $(curl -sf "${U[@]}" "$H/api/v1/jobs")"
[ "$(rtest "$art2")" = 200 ] || fail "rules/test ART2: $(cat "$T/body")"
cp "$T/body" "$T/test.art2.json"
$PY - "$T/test.art2.json" <<'PY' || fail "rules/test ART2 (held): $(cat "$T/test.art2.json")"
import json, sys
d = json.load(open(sys.argv[1]))
r = d["rules"][0]
assert r["matched"] is True and len(r["requires"]) == 2, r  # the comma inside (CT, MR) does not split
q, m = r["requires"]
assert q["expression"] == 'SeriesDescription like "*VENOUS*"' and q["met"] is False and not q.get("series_uid"), q
assert m["expression"] == "Modality in (CT, MR)" and m["met"] is True, m
j = d["jobs"][0]
assert j["rule"] == "arterial" and j["waiting"] is True and j["missing"] == 'SeriesDescription like "*VENOUS*"', j
print("ART2 held:", d["reason"], "| missing:", j["missing"])
PY
# /metrics once failed here in a clean make test (not reproduced in 6 runs since): the held series
# must show there within 5 s, and a first answer that did not show it is printed for the next look.
held_metric() { curl -s -o "$T/metrics" -w '%{http_code}' "$H/metrics" | grep -qx 200 && grep -qx "samda_series_held 1" "$T/metrics"; }
if ! held_metric; then
  echo "  (first /metrics read: HTTP $(curl -s -o /dev/null -w '%{http_code}' "$H/metrics"), $(grep -E '^samda_series_held' "$T/metrics" | tr '\n' ' ')$(tail -c 300 "$T/metrics" | tr '\n' ' '))"
  for _ in $(seq 25); do held_metric && break; sleep 0.2; done
  held_metric || fail "/metrics: samda_series_held should be 1 while ART2 is held: $(grep -E '^samda_series_held' "$T/metrics")"
fi
ok "after SIGHUP, ART2 alone is held: complete, no job; rules/test says waiting, missing SeriesDescription like \"*VENOUS*\"; /metrics samda_series_held 1"

storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ven2" || fail "storescu VEN2"
wait_for_cmd 60 bash -c "[ \$(grep -c 'msg=\"series complete, job queued\"' '$T/d.log') -ge 2 ]"
wait_for_cmd 240 bash -c "[ \$(grep -c 'msg=\"job done: DICOM-SEG recorded\"' '$T/d.log') -ge 2 ]"
curl -sf "${U[@]}" "$H/api/v1/jobs" >"$T/jobs2.json"
$PY - "$T/jobs2.json" "$art2" "$ven2" <<'PY' || fail "jobs after VENOUS: $(cat "$T/jobs2.json")"
import json, sys
d = json.load(open(sys.argv[1])); d = d.get("jobs", d) if isinstance(d, dict) else d
mine = [j for j in d if j["series_uid"] == sys.argv[2]]
assert len(d) == 2 and len(mine) == 1, "jobs: %s" % [(j["series_uid"], j["state"]) for j in d]
j = mine[0]
p = j["params"] if isinstance(j["params"], dict) else json.loads(j["params"])
assert p["rule"] == "arterial" and j["site"] == "abdomen" and j["priority"] == 8 and j["state"] == "done", j
assert not [j for j in d if j["series_uid"] == sys.argv[3]], "VENOUS matches no rule: no job of its own"
PY
[ "$(rtest "$art2")" = 200 ] && json_expr '(d["jobs"][0]["waiting"], d["rules"][0]["requires"][0]["met"], d["rules"][0]["requires"][0]["series_uid"])' <"$T/body" |
  grep -qxF "(False, True, '$ven2')" || fail "rules/test ART2 after VENOUS: $(cat "$T/body")"
wait_for_cmd 120 exports_done 4 || fail "exports of ART2: $(curl -sf "${A[@]}" "$H/api/v1/exports")"
curl -sf "$O/tools/find" -d "{\"Level\":\"Instance\",\"Query\":{\"StudyInstanceUID\":\"$s2\"}}" | json_len | grep -qx 3 ||
  fail "Orthanc: study $s2 should hold ART2's SEG, RTSTRUCT and SR"
curl -sf "$H/metrics" | grep -qx "samda_series_held 0" || fail "/metrics: samda_series_held should be 0 once ART2 has its job"
ok "VEN2 (same study) completes: the held ART2 gets its job (rule arterial, done, exported); rules/test names VEN2 as meeting requires; samda_series_held 0"

# once its job is queued, the series' recorded reason says the study's series arrived
reason2=$(series_state "$s2" "$art2")
echo "$reason2" | grep -q "required series arrived" || fail "ART2's recorded reason after its job: '$reason2'"
ok "ART2's recorded reason: '$reason2'"

# labels the adapter lacks (a rule's or a request's): the job fails naming them and the adapter's
code=$(curl -s -o "$T/body" -w '%{http_code}' "${U[@]}" -H 'Content-Type: application/json' \
  -d '{"labels":["lesion"]}' "$H/api/v1/studies/$s1/segment")
[ "$code" = 202 ] || fail "POST segment with labels [lesion]: $code $(cat "$T/body")"
jid=$(json_expr 'd["id"]' <"$T/body")
job_failed() { curl -sf "${U[@]}" "$H/api/v1/jobs/$jid" | json_expr 'd["state"]' | grep -qx failed; }
wait_for_cmd 120 job_failed
jerr=$(curl -sf "${U[@]}" "$H/api/v1/jobs/$jid" | json_expr 'd["error"]')
echo "$jerr" | grep -q "none of the requested labels (lesion) is a label of the adapter (the \[model\] adapter: liver" ||
  fail "job with labels [lesion]: '$jerr'"
ok "labels the adapter lacks: the job fails naming them and the adapter's: $jerr"

# 5. retention: retain_source (SIGHUP) deletes the source series whose every result object reached
# every destination of its rule (ART, ART2); PLAIN and VEN2 (no result) stay. retain_source is set
# on both sites: the routed series were received by [site default] and segmented by [site abdomen].
bytes() { curl -sf "$H/metrics" | awk '$1 == "samda_store_bytes" {print $2}'; }
before=$(bytes)
conf 'SeriesDescription like "*VENOUS*", Modality in (CT, MR)'
sed -i 's/^study_idle = 1s$/study_idle = 1s\nretain_source = 1s/' "$T/s.conf"
kill -HUP "$(cat "$T/d.pid")"
wait_for_cmd 20 bash -c "[ \$(grep -c 'msg=\"configuration reloaded\"' '$T/d.log') -ge 2 ]"
modalities() { curl -sf "${A[@]}" "$H/dicomweb/studies/$1/series" | json_expr 'sorted(s["00080060"]["Value"][0] for s in d)' 2>/dev/null || echo "[]"; }
retained() {
  [ "$(code -X POST "${A[@]}" "$H/api/v1/retention/run")" = 200 ] || return 1
  [ "$(modalities "$s0")" = "['RTSTRUCT', 'SEG', 'SR']" ] && [ "$(modalities "$s2")" = "['CT', 'RTSTRUCT', 'SEG', 'SR']" ]
}
wait_for_cmd 30 retained || fail "after retention: $(modalities "$s0") $(modalities "$s2"); last run: $(cat "$T/body")"
[ "$(modalities "$s1")" = "['CT']" ] || fail "PLAIN (not segmented) was deleted: $(modalities "$s1")"
curl -sf "${U[@]}" "$H/api/v1/studies/$s2/results" | json_expr 'sorted(x["series_uid"] for x in d["series"] if x["modality"] == "CT")' |
  grep -qxF "['$ven2']" || fail "study 2's CT series after retention: $(curl -sf "${U[@]}" "$H/api/v1/studies/$s2/results")"
mid=$(bytes)
[ "$mid" -lt "$before" ] || fail "retention freed nothing: $before -> $mid"
"$SAMDA" check --data-dir "$D" >"$T/check.out" 2>&1 || fail "samda check after retention: $(cat "$T/check.out")"
ok "retain_source: ART and ART2 (results delivered to pacs and web) deleted, PLAIN and VEN2 kept; store bytes $before -> $mid; samda check clean"

# deleting the studies frees the rest; the data directory checks clean
for s in "$s0" "$s1" "$s2"; do
  for i in $(seq 1 20); do
    c=$(code -X DELETE "${A[@]}" "$H/api/v1/studies/$s")
    [ "$c" = 409 ] || break
    sleep 0.5
  done
  [ "$c" = 200 ] || fail "DELETE study $s: $c $(cat "$T/body")"
done
after=$(bytes)
[ "$(code "${A[@]}" "$H/dicomweb/studies")" = 200 ] && [ "$(json_len <"$T/body")" = 0 ] || fail "studies left: $(cat "$T/body")"
[ "${after:-x}" = 0 ] || fail "samda_store_bytes after deleting everything: $mid -> $after"
"$SAMDA" check --data-dir "$D" >"$T/check.out" 2>&1 || fail "samda check: $(cat "$T/check.out")"
grep -q 'integrity_ok=yes' "$T/check.out" && grep -q 'tmp_files=0' "$T/check.out" || fail "samda check: $(cat "$T/check.out")"
ok "DELETE /api/v1/studies/{uid} for the three studies: store bytes $mid -> $after; samda check: clean"
