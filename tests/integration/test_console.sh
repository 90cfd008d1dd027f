#!/usr/bin/env bash
# The operator console (/ui/, issue 21) in Debian's chromium, driven by puppeteer-core
# (console_check.js) against a real samdad with the demo model: keyboard sign-in with a user token
# (no admin page offered, the exports API refuses it) and then an admin token; a phantom CT sent
# with storescu while the Jobs page is open, its job seen running to done; the job's study and the
# result's viewer, whose canvas must show mask pixels in a label colour; a box drawn on the
# Interactive page, whose session mask must be drawn, then accepted as a correction (a DICOM-SEG
# of the study, checked with pydicom) and trained on from the adapters page; the SEG's export, refused
# by a CT-only storescp, shown failed with its cause, the destination repaired, C-ECHO, retried
# from the page and done; adapter version 2 activated and rolled back from the page; the audit log
# filtered; the routing rules page lists the rule and tests the job's series against it; the Content-Security-Policy on the page, no inline script, an injected inline script
# blocked. Screenshots are kept in the build folder (tests/artefacts/console-*.png).
# Skips (exit 77, with the reason) only when chromium, node or puppeteer-core is missing
# (deploy/install-deps.sh installs them into ~/.cache/samda/ohif/pptr).
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
PPTR=${SAMDA_PPTR_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/samda/ohif/pptr}
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }
[ -x /usr/bin/chromium ] || { echo "SKIP: /usr/bin/chromium missing (Debian package chromium)"; exit 77; }
command -v node >/dev/null || { echo "SKIP: node missing"; exit 77; }
export NODE_PATH="$PPTR/node_modules"
node -e 'require("puppeteer-core")' 2>/dev/null || { echo "SKIP: puppeteer-core missing in $NODE_PATH (deploy/install-deps.sh)"; exit 77; }

"$SAMDA" phantom --out "$T/ph" --site A --count 16 --seed 5 --slices-per-body 16 --dicom >/dev/null || fail "phantom"
dport=$(free_port); hport=$(free_port); pport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu" \
  "[destination pacs]" "ae_title = PACS" "host = 127.0.0.1" "port = $pport"
sed -i 's/^max_wait = 1h/max_wait = 1h\ndestinations = pacs/' "$T/s.conf"
printf '[rule ct-any]\nmatch = Modality = CT\n' >>"$T/s.conf" # the routing rules page shows it and tests it
sed -i 's/^tick = 200ms/tick = 200ms\nexport_backoff = 1s\nexport_backoff_max = 2s/' "$T/s.conf"

# the destination at first accepts CT only: the SEG is refused (failed, retried only by hand)
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
mkdir -p "$T/recv"
storescp -xf "$T/ct_only.cfg" CTOnly -aet PACS -od "$T/recv" "$pport" >"$T/scp1.log" 2>&1 &
echo $! >"$T/scp1.pid"; _pids+=($!)
wait_for_cmd 10 echoscu -aet SAMDA -aec PACS 127.0.0.1 "$pport"
# what the browser runs to repair it: a storescp that takes every storage SOP class
cat >"$T/fix.sh" <<FIX
kill \$(cat "$T/scp1.pid"); sleep 0.5
storescp -aet PACS -od "$T/recv" "$pport" >"$T/scp2.log" 2>&1 &
echo \$! >"$T/scp2.pid"
for i in \$(seq 50); do echoscu -aet SAMDA -aec PACS 127.0.0.1 "$pport" 2>/dev/null && exit 0; sleep 0.2; done; exit 1
FIX

start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
D="$T/data"; H="http://127.0.0.1:$hport"
admin=$("$SAMDA" token create ops --role admin --data-dir "$D" 2>/dev/null)
user=$("$SAMDA" token create viewer --role user --data-dir "$D" 2>/dev/null)
AA=(-H "Authorization: Bearer $admin")

# two adapter versions of the default site, the first active (the browser activates 2, rolls back)
for v in 1 2; do
  q=""; [ "$v" = 2 ] && q="?parent=1"
  [ "$(code -X POST "${AA[@]}" -H 'Content-Type: application/octet-stream' --data-binary @"$DEMO/site_A_adapter.safetensors" \
    "$H/api/v1/sites/default/adapters$q")" = 201 ] || fail "adapter upload $v: $(cat "$T/body")"
done
[ "$(code -X POST "${AA[@]}" "$H/api/v1/sites/default/adapters/1/activate")" = 200 ] || fail "activate 1: $(cat "$T/body")"

# the console's files: public, with the policy
curl -s -D "$T/ui.h" -o "$T/ui.html" "$H/ui/" || fail "GET /ui/"
grep -qi "^content-security-policy: default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; frame-ancestors 'none'" "$T/ui.h" ||
  fail "no strict CSP on /ui/: $(cat "$T/ui.h")"
grep -qi '^content-type: text/html' "$T/ui.h" || fail "content type of /ui/"
ok "GET /ui/ without a token: the console's page, with the strict Content-Security-Policy"

mkdir -p "$SAMDA_BUILD_DIR/tests/artefacts"
export SAMDA_URL="$H" USER_TOKEN="$user" ADMIN_TOKEN="$admin" SITE=default DESTINATION=pacs TIMEOUT_S=420
export SHOTS="$SAMDA_BUILD_DIR/tests/artefacts"
export SEND_CMD="storescu -aet STORESCU -aec SAMDA 127.0.0.1 $dport +sd $T/ph/dicom/A_00000"
export FIX_CMD="bash $T/fix.sh"
rc=0; node "$(dirname "$0")/console_check.js" >"$T/console.json" 2>"$T/console.err" || rc=$?
echo "console: $(head -c 1500 "$T/console.json")"
[ -s "$T/console.json" ] || fail "the browser run failed (rc $rc): $(tail -20 "$T/console.err")"
$PY - "$T/console.json" <<'PY' || fail "the console did not do what it should (screenshots in $SHOTS)"
import json, sys
r = json.load(open(sys.argv[1]))
assert r.get("ok"), "step %r failed: %s" % (r.get("failed_step"), r.get("error"))
csp = r["csp_header"]
assert "script-src 'self';" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp, csp
assert r["inline_scripts"] == 0 and r["inline_scripts_end"] == 0, "inline scripts in the page"
assert r["injected_inline_ran"] is False, "an injected inline script ran: the policy does not hold"
assert any(v.startswith("script-src") for v in r["csp_violations"]), r["csp_violations"]
assert all(v.startswith("script-src") and v.endswith("inline") for v in r["csp_violations"]), \
    "the console itself broke its policy: %s" % r["csp_violations"]
assert not r["errors"], "page errors: %s" % r["errors"]
for k in ("unlabelled_signin", "unlabelled", "unlabelled_study", "unlabelled_adapters", "unlabelled_interactive"):
    assert r[k] == [], "controls without a label (%s): %s" % (k, r[k])
assert r["user_role"] == "user" and r["admin_role"] == "admin"
assert r["user_nav"] == ["Overview", "Studies", "Jobs", "Interactive"], r["user_nav"]
assert r["admin_nav"] == ["Overview", "Studies", "Jobs", "Exports", "Sites and adapters", "Interactive", "Routing rules", "Audit log"], r["admin_nav"]
assert r["user_exports_page"] == "Overview" and r["user_exports_api"] == 403, (r["user_exports_page"], r["user_exports_api"])
assert r["token_in_session_storage"] and r["signed_out"]
assert r["health"].startswith("Health: "), r["health"]
# the Jobs page, open before the study was sent, showed its job appear and reach done by itself
assert r["jobs_before"] == 0 and r["job_seen_without_reload"] and "done" in r["job_states_seen"], \
    (r["jobs_before"], r["job_states_seen"])
v = r["viewer"]
assert v["mask_pixels"] > 0 and v["coloured"] >= v["mask_pixels"] * 0.9, v
assert v["preview"] == v["width"] > 0, v
assert r["labels_rows"] >= 1
w = r["window_change"]
assert w["lung"] != w["soft_tissue"] and w["lung"] > 0, w
i = r["interactive"]
assert i["area"] > 100 and i["coloured"] >= i["area"], i
assert r["correction"]["sop"] and "Stored" in r["correction"]["text"], r["correction"]
t = r["train"]
assert t["state"] == "done", t
res = json.loads(t["result"])
assert res["data"]["studies"] == 1 and res["data"].get("slices", 0) >= 1, res["data"]
f = r["failed_export"]
assert "failed" in f["state"] and "presentation context" in f["cause"], f
assert r["echo"].startswith("C-ECHO ok"), r["echo"]
assert r["export_after_retry"] == "done"
assert r["active_after_activate"] == "2" and r["active_after_rollback"] == "1"
assert any("adapters/{version}/activate" in a for a in r["audit"]), r["audit"][:20]
assert r["audit_filtered"] and all("rollback" in a for a in r["audit_filtered"]), r["audit_filtered"]
assert r["rules"] == ["ct-any"], r["rules"]
t = r["rules_test"]
assert t["tests"][0][:4] == ["ct-any", "Modality = CT", "CT", "yes"], t["tests"]
assert t["jobs"][0][0] == "ct-any" and t["jobs"][0][1] == "default" and t["jobs"][0][2] == "normal", t["jobs"]
assert any("Retry export" in d or "again" in d for d in r["dialogs"]) and any("Roll back" in d for d in r["dialogs"]), r["dialogs"]
bad = [e for e in r.get("http_errors", []) if not ("/api/v1/destinations" in e and e.startswith("403")) and not ("/api/v1/exports" in e and e.startswith("403"))]
assert not bad, "requests that failed: %s" % bad
print("job", r["job"], "states", r["job_states_seen"], "viewer", v, "export", f["id"], "rollback ok")
PY
json_expr 'd["correction"]["sop"], d["study"]' <"$T/console.json" >"$T/corr"
read -r corr_sop corr_study <"$T/corr"
[ "$(code "${AA[@]}" "$H/dicomweb/studies/$corr_study/series?Modality=SEG&includefield=0008103E")" = 200 ] || fail "QIDO SEG series"
grep -q "Correction of samda result" "$T/body" || fail "the correction's series is not in QIDO-RS: $(cat "$T/body")"
seg_series=$($PY -c 'import json,sys; print([s["0020000E"]["Value"][0] for s in json.load(open(sys.argv[1])) if "Correction" in s.get("0008103E",{}).get("Value",[""])[0]][0])' "$T/body")
curl -sf "${AA[@]}" -H 'Accept: multipart/related; type="application/dicom"' \
  "$H/dicomweb/studies/$corr_study/series/$seg_series/instances/$corr_sop" >"$T/corr.multipart" || fail "WADO of the correction"
$PY - "$T/corr.multipart" "$T/console.json" <<'PY' || fail "the correction's DICOM-SEG is not what was accepted"
import io, json, sys
import pydicom
raw = open(sys.argv[1], "rb").read()
start = raw.index(b"\r\n\r\n") + 4
end = raw.rindex(b"\r\n--")
seg = pydicom.dcmread(io.BytesIO(raw[start:end]))
r = json.load(open(sys.argv[2]))
assert seg.Modality == "SEG" and seg.ContentLabel == "CORRECTION", (seg.Modality, seg.ContentLabel)
assert int(seg.NumberOfFrames) == 1 and len(seg.SegmentSequence) == 1, (seg.NumberOfFrames, len(seg.SegmentSequence))
s = seg.SegmentSequence[0]
assert s.SegmentAlgorithmType == "SEMIAUTOMATIC", s.SegmentAlgorithmType
assert s.SegmentLabel in r["correction"]["text"], (s.SegmentLabel, r["correction"])
px = int(seg.pixel_array.sum())
assert ("(%d pixels of" % px) in r["correction"]["text"], (px, r["correction"]["text"])
print("correction", seg.SOPInstanceUID, s.SegmentLabel, px, "pixels")
PY
ok "the accepted mask is a DICOM-SEG of the study (QIDO-RS, WADO-RS): one frame, one SEMIAUTOMATIC segment, the pixels accepted; training took it (job done, one study)"
# the route's refusals (as a user: the role the Interactive page needs)
UJ=(-H "Authorization: Bearer $user" -H 'Content-Type: application/json')
rows=$($PY -c 'import pydicom,os,sys; d=sys.argv[1]; print(pydicom.dcmread(os.path.join(d,sorted(os.listdir(d))[0])).Rows)' "$T/ph/dicom/A_00000")
n=$((rows * rows))
corr() { code -X POST "${UJ[@]}" -d "$2" "$H/api/v1/results/$1/corrections"; }
[ "$(corr 99999 '{"slice":0,"label":"liver","mask":{"rows":1,"columns":1,"counts":[0,1]}}')" = 404 ] && grep -q "unknown result 99999" "$T/body" || fail "unknown result: $(cat "$T/body")"
[ "$(corr 1 "{\"slice\":0,\"label\":\"brain\",\"mask\":{\"rows\":$rows,\"columns\":$rows,\"counts\":[0,$n]}}")" = 404 ] &&
  grep -q "the result has no segment brain (it has liver, kidney" "$T/body" || fail "unknown label: $(cat "$T/body")"
[ "$(corr 1 "{\"slice\":0,\"label\":\"liver\",\"mask\":{\"rows\":$rows,\"columns\":$rows,\"counts\":[$n]}}")" = 400 ] &&
  grep -q "the mask is empty" "$T/body" || fail "empty mask: $(cat "$T/body")"
[ "$(corr 1 "{\"slice\":0,\"label\":\"liver\",\"mask\":{\"rows\":$rows,\"columns\":$rows,\"counts\":[1,2]}}")" = 400 ] &&
  grep -q "mask runs cover 3 pixels, the slice has $n" "$T/body" || fail "short runs: $(cat "$T/body")"
[ "$(corr 1 "{\"slice\":0,\"label\":\"liver\",\"mask\":{\"rows\":$rows,\"columns\":$rows,\"counts\":[0,$((n + 1))]}}")" = 400 ] &&
  grep -q "mask run 1 is not a count within the slice" "$T/body" || fail "long runs: $(cat "$T/body")"
[ "$(corr 1 '{"slice":0,"label":"liver","mask":{"rows":2,"columns":2,"counts":[0,4]}}')" = 400 ] &&
  grep -q "the mask is 2x2, the series' slices ${rows}x${rows}" "$T/body" || fail "wrong size: $(cat "$T/body")"
[ "$(corr 1 "{\"slice\":999,\"label\":\"liver\",\"mask\":{\"rows\":$rows,\"columns\":$rows,\"counts\":[0,$n]}}")" = 400 ] &&
  grep -q "slice 999 is out of range" "$T/body" || fail "slice out of range: $(cat "$T/body")"
[ "$(corr 1 '{"slice":0,"label":"liver","mask":{},"extra":1}')" = 400 ] && grep -q "unknown member extra" "$T/body" || fail "unknown member: $(cat "$T/body")"
[ "$(code -X POST -H "Authorization: Bearer $user" "$H/api/v1/results/1/corrections")" = 400 ] || fail "no body: $(cat "$T/body")"
ok "POST /api/v1/results/{id}/corrections refuses unknown results and labels (naming the result's), empty, short, long and mis-sized masks, slices out of range, unknown members"
ok "console: keyboard sign-in (user: no admin page, 403 from the API; admin: every page), job $(json_expr 'd["job"]' <"$T/console.json") seen to done, overlay drawn, export retried, adapter activated and rolled back, audit filtered, CSP holds"

# what the page did is what happened: the SEG reached the repaired destination, version 1 is active
wait_for_cmd 20 bash -c "ls '$T/recv' | grep -q '^SG\.'"
[ "$(code "${AA[@]}" "$H/api/v1/sites/default/adapters")" = 200 ] || fail "adapters"
json_expr '[a["version"] for a in d if a["active"]]' <"$T/body" | grep -qx '\[1\]' || fail "active version after rollback: $(cat "$T/body")"
admin_id=$("$SAMDA" token list --data-dir "$D" | awk '$2 == "ops" {print $1}')
train_job=$(json_expr 'd["train"]["job"]' <"$T/console.json")
json_expr 'sorted((a["version"], a["provenance"]) for a in d)' <"$T/body" |
  grep -qxF "[(1, {'uploaded_by': $admin_id}), (2, {'uploaded_by': $admin_id}), (3, {'origin': 'train', 'job': $train_job})]" ||
  fail "who made each version: $(cat "$T/body")"
"$SAMDA" audit --data-dir "$D" | json_expr '[e["action"] for e in d if e["actor"].startswith("token:")]' >"$T/acts"
for a in "http POST /api/v1/exports/{id}/retry" "http POST /api/v1/sessions/{session}/predict" "http POST /api/v1/sites/{site}/adapters/{version}/activate" \
         "http POST /api/v1/sites/{site}/adapters/rollback" "http GET /api/v1/results/{id}/slices/{slice}/mask.png"; do
  grep -qF "$a" "$T/acts" || fail "not audited: $a"
done
ok "the SEG arrived at the repaired destination; version 1 active; versions say who made them; the console's calls are in the audit log"
for s in jobs viewer interactive train exports-failed exports-done adapters overview; do
  [ -s "$SHOTS/console-$s.png" ] || fail "no screenshot console-$s.png"
done
ok "screenshots kept: $SHOTS/console-*.png"
