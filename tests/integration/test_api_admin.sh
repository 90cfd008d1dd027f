#!/usr/bin/env bash
# The administration routes against the real core: sites (created through the API, in effect
# without a restart, configuration precedence), destinations with C-ECHO against a real storescp
# and a closed port, the adapter lifecycle (upload, lineage, activate, rollback, delete), roles,
# audit, and hostile input (bad JSON, unknown names, traversal, oversized and non-safetensors
# uploads).
. "$(dirname "$0")/lib.sh"
command -v storescp >/dev/null || fail "storescp missing (dcmtk)"
dport=$(free_port); hport=$(free_port)
# A small http.max_body so that the oversized-upload check stays cheap.
write_conf "$T/s.conf" "$dport" "$hport" \
  '[site neuro]' 'called_ae = SAMDA_NEURO' 'modalities = MR' \
  '[destination pacs-ini]' 'ae_title = PACSINI' 'host = 127.0.0.1' 'port = 104'
sed -i 's|^\[http\]$|[http]\nmax_body = 3MiB\ncors_origin = http://localhost:3000|' "$T/s.conf"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"'
D="$T/data"; H="http://127.0.0.1:$hport"
admin=$("$SAMDA" token create ops --role admin --data-dir "$D" 2>/dev/null)
user=$("$SAMDA" token create viewer --role user --data-dir "$D" 2>/dev/null)
[[ "$admin" == samda_* && "$user" == samda_* ]] || fail "token creation failed"
AA=(-H "Authorization: Bearer $admin")
AJ=(-H "Authorization: Bearer $admin" -H 'Content-Type: application/json')
title() { json_expr 'd.get("title","")' <"$T/body"; }

# ---- roles: a user token gets 403 on every admin route, no token 401 ------------------------------
for r in "GET /api/v1/sites" "GET /api/v1/sites/neuro" "PUT /api/v1/sites/x" "GET /api/v1/destinations" \
         "POST /api/v1/destinations" "GET /api/v1/destinations/x" "DELETE /api/v1/destinations/x" \
         "POST /api/v1/destinations/x/echo" "GET /api/v1/sites/neuro/adapters" "POST /api/v1/sites/neuro/adapters" \
         "POST /api/v1/sites/neuro/adapters/1/activate" "POST /api/v1/sites/neuro/adapters/rollback" \
         "DELETE /api/v1/sites/neuro/adapters/1" "POST /api/v1/sites/neuro/adapters/train" \
         "POST /api/v1/sites/neuro/adapters/1/evaluate" "GET /api/v1/exports" "POST /api/v1/exports/1/retry"; do
  set -- $r
  [ "$(code -X "$1" -H "Authorization: Bearer $user" "$H$2")" = 403 ] || fail "user on $r: $(cat "$T/body")"
  title | grep -q "needs role admin" || fail "403 title on $r: $(cat "$T/body")"
  [ "$(code -X "$1" "$H$2")" = 401 ] || fail "no token on $r"
done
ok "user token: 403 naming the admin role on all 17 admin routes; no token: 401"

# ---- sites ----------------------------------------------------------------------------------
[ "$(code "${AA[@]}" "$H/api/v1/sites")" = 200 ] || fail "sites list: $(cat "$T/body")"
json_expr '{s["name"]: s["source"] for s in d}' <"$T/body" | grep -q "'neuro': 'configuration'" || fail "sites list: $(cat "$T/body")"
[ "$(code "${AA[@]}" "$H/api/v1/sites/neuro")" = 200 ] || fail "site get"
json_expr 'd["settings"]["modalities"], d["ae"]["called_ae"]' <"$T/body" | grep -qx "\['MR'\] \['SAMDA_NEURO'\]" || fail "site neuro: $(cat "$T/body")"
[ "$(code "${AA[@]}" "$H/api/v1/sites/nosuch")" = 404 ] || fail "unknown site not 404"
title | grep -q "unknown site nosuch" || fail "404 title: $(cat "$T/body")"
[ "$(code -X PUT "${AJ[@]}" -d '{"settings":{"modalities":["CT"]}}' "$H/api/v1/sites/neuro")" = 409 ] || fail "PUT on an INI site not 409"
title | grep -q "configuration file" || fail "precedence not explained: $(cat "$T/body")"
ok "sites: list with sources, get, unknown 404, a configuration-file site refuses PUT (409, says the file wins)"

# Bad JSON: 400 naming line and column.
[ "$(code -X PUT "${AJ[@]}" --data-binary $'{\n  "settings": {"min_slices": 3,,}\n}' "$H/api/v1/sites/liver")" = 400 ] || fail "bad JSON not 400"
title | grep -Eq "line 2 column [0-9]+" || fail "bad JSON title lacks line/column: $(cat "$T/body")"
[ "$(code -X PUT "${AJ[@]}" -d '[1,2]' "$H/api/v1/sites/liver")" = 400 ] || fail "array body not 400"
[ "$(code -X PUT "${AJ[@]}" -d '{"settings":{"min_slices":0}}' "$H/api/v1/sites/liver")" = 400 ] || fail "min_slices 0 not 400"
title | grep -q "settings.min_slices" || fail "min_slices title: $(cat "$T/body")"
[ "$(code -X PUT "${AJ[@]}" -d '{"settings":{"tta":"always"}}' "$H/api/v1/sites/liver")" = 400 ] || fail "bad tta not 400"
[ "$(code -X PUT "${AJ[@]}" -d '{"ae":{"called_ae":["SAMDA_NEURO"]}}' "$H/api/v1/sites/liver")" = 409 ] || fail "AE clash not 409"
title | grep -q "already selects site neuro" || fail "AE clash title: $(cat "$T/body")"
[ "$(code -X PUT "${AJ[@]}" -d '{"bogus":1}' "$H/api/v1/sites/liver")" = 400 ] || fail "unknown member not 400"
[ "$(code -X PUT "${AJ[@]}" -d '{"settings":{"destinations":["nowhere"]}}' "$H/api/v1/sites/liver")" = 400 ] || fail "unknown destination not 400"
[ "$(code -X PUT "${AJ[@]}" "$H/api/v1/sites/liver")" = 400 ] || fail "PUT without body not 400"
[ "$(code -X PUT "${AA[@]}" -H 'Content-Type: text/plain' -d 'x' "$H/api/v1/sites/liver")" = 415 ] || fail "PUT text/plain not 415"
[ "$(code "${AA[@]}" "$H/api/v1/sites/liver")" = 404 ] || fail "a refused PUT created the site"
ok "site PUT input: bad JSON 400 with line/column, bounds, enum, AE clash 409, unknown member/destination 400, 415; nothing written"

# Traversal and bad names never reach the core.
[ "$(code "${AA[@]}" "$H/api/v1/sites/..%2F..%2Fetc")" = 400 ] || fail "site traversal not 400"
[ "$(code "${AA[@]}" "$H/api/v1/sites/a%2Fb/adapters")" = 400 ] || fail "encoded slash not 400"
[ "$(code --path-as-is "${AA[@]}" "$H/api/v1/destinations/..")" = 400 ] || fail "destination .. not 400"
[ "$(code -X DELETE "${AA[@]}" "$H/api/v1/sites/neuro/adapters/..%2F1")" = 400 ] || fail "version traversal not 400"
[ "$(code -X DELETE "${AA[@]}" "$H/api/v1/sites/neuro/adapters/01")" = 400 ] || fail "version 01 not 400"
[ "$(code -X PUT "${AJ[@]}" -d '{}' "$H/api/v1/sites/bad%20name")" = 400 ] || fail "site name with space not 400"
ok "path traversal and malformed names: 400"

# Create a site through the API: in effect at once (STOW to it, AE mapping via C-STORE).
body='{"ae":{"called_ae":["SAMDA_LIVER"]},"settings":{"modalities":["CT","MR"],"min_slices":2,"series_idle_ms":1000,"study_idle_ms":1000,"max_wait_ms":3600000,"tta":"episodic","labels":["liver","spleen"]}}'
[ "$(code -X PUT "${AJ[@]}" -d "$body" -D "$T/hdr" "$H/api/v1/sites/liver")" = 201 ] || fail "site create: $(cat "$T/body")"
grep -qi '^Location: /api/v1/sites/liver' "$T/hdr" || fail "no Location on 201"
json_expr 'd["source"], d["settings"]["tta"], d["settings"]["labels"]' <"$T/body" | grep -qx "api episodic \['liver', 'spleen'\]" || fail "created site: $(cat "$T/body")"
[ "$(code -X PUT "${AJ[@]}" -d "${body/\"min_slices\":2/\"min_slices\":3}" "$H/api/v1/sites/liver")" = 200 ] || fail "site update: $(cat "$T/body")"
json_expr 'd["settings"]["min_slices"]' <"$T/body" | grep -qx 3 || fail "update not applied"
sqlite3 "$D/index.sqlite3" "select settings_json from sites where name='liver'" | grep -q '"min_slices":3' || fail "site not persisted in SQLite"
MR="$FIXTURES/dicom/mr-brain-20"
if [ -d "$MR" ]; then
  # C-STORE to the API site's called AE: the series lands in site liver (no restart happened).
  storescu -aet STORESCU -aec SAMDA_LIVER 127.0.0.1 "$dport" "$MR"/brain_00[1-3].dcm || fail "storescu to SAMDA_LIVER"
  sqlite3 "$D/index.sqlite3" "select count(*) from series s join sites t on t.id=s.site_id where t.name='liver'" | grep -qx 1 \
    || fail "C-STORE to an API site's AE title did not map to it"
  ok "API site: 201 + Location, update 200, persisted in SQLite, its AE title maps associations without a restart"
else
  ok "API site: 201 + Location, update 200, persisted in SQLite (MR fixtures absent: AE mapping not exercised)"
fi
# Survives a reload (SIGHUP installs a fresh configuration; the core lays the API site over it again).
kill -HUP "$(cat "$T/d.pid")"
wait_for_text "$T/d.log" 'configuration reloaded'
sleep 1.2
[ "$(code "${AA[@]}" "$H/api/v1/sites/liver")" = 200 ] || fail "site lost after reload"
if [ -d "$MR" ]; then
  copy_series "$MR" "$T/mr2"
  storescu -aet STORESCU -aec SAMDA_LIVER 127.0.0.1 "$dport" "$T"/mr2/brain_00[1-2].dcm || fail "storescu after reload"
  sqlite3 "$D/index.sqlite3" "select count(*) from series s join sites t on t.id=s.site_id where t.name='liver'" | grep -qx 2 \
    || fail "API site AE mapping lost after SIGHUP"
fi
ok "API sites stay in effect across a configuration reload"

# ---- destinations -----------------------------------------------------------------------------
sport=$(free_port)
mkdir -p "$T/scp"
storescp -aet PEERSCP --output-directory "$T/scp" "$sport" >"$T/storescp.log" 2>&1 &
_pids+=($!)
wait_for_cmd 10 echoscu -aec PEERSCP 127.0.0.1 "$sport"
closed=$(free_port)
[ "$(code -X POST "${AJ[@]}" -d "{\"name\":\"peer\",\"ae_title\":\"PEERSCP\",\"host\":\"127.0.0.1\",\"port\":$sport}" -D "$T/hdr" "$H/api/v1/destinations")" = 201 ] || fail "destination add: $(cat "$T/body")"
grep -qi '^Location: /api/v1/destinations/peer' "$T/hdr" || fail "destination Location"
[ "$(code -X POST "${AJ[@]}" -d "{\"name\":\"peer\",\"ae_title\":\"PEERSCP\",\"host\":\"127.0.0.1\",\"port\":$sport}" "$H/api/v1/destinations")" = 409 ] || fail "duplicate destination not 409"
[ "$(code -X POST "${AJ[@]}" -d "{\"name\":\"closed\",\"ae_title\":\"NOBODY\",\"host\":\"127.0.0.1\",\"port\":$closed}" "$H/api/v1/destinations")" = 201 ] || fail "destination closed add"
[ "$(code -X POST "${AJ[@]}" -d '{"name":"x","ae_title":"A","host":"127.0.0.1","port":70000}' "$H/api/v1/destinations")" = 400 ] || fail "port 70000 not 400"
title | grep -q "port" || fail "port title"
[ "$(code -X POST "${AJ[@]}" -d '{"name":"x","ae_title":"AAAAAAAAAAAAAAAAAAAAA","host":"127.0.0.1","port":104}' "$H/api/v1/destinations")" = 400 ] || fail "long AE not 400"
[ "$(code -X POST "${AJ[@]}" -d '{"name":"../x","ae_title":"A","host":"127.0.0.1","port":104}' "$H/api/v1/destinations")" = 400 ] || fail "traversal name not 400"
[ "$(code -X POST "${AJ[@]}" -d '{"name":"y","ae_title":"A","host":"a b;rm","port":104}' "$H/api/v1/destinations")" = 400 ] || fail "bad host not 400"
[ "$(code "${AA[@]}" "$H/api/v1/destinations")" = 200 ] || fail "destinations list"
json_expr 'sorted((x["name"], x["source"]) for x in d)' <"$T/body" | grep -qx "\[('closed', 'api'), ('pacs-ini', 'configuration'), ('peer', 'api')\]" || fail "destinations list: $(cat "$T/body")"
[ "$(code "${AA[@]}" "$H/api/v1/destinations/peer")" = 200 ] || fail "destination get"
json_expr 'd["port"]' <"$T/body" | grep -qx "$sport" || fail "destination get port"
[ "$(code "${AA[@]}" "$H/api/v1/destinations/nosuch")" = 404 ] || fail "unknown destination not 404"
ok "destinations: add 201 + Location, duplicate 409, bad port/AE/name/host 400, list (API + configuration), get, unknown 404"

[ "$(code -X POST "${AA[@]}" "$H/api/v1/destinations/peer/echo")" = 200 ] || fail "echo: $(cat "$T/body")"
json_expr 'd["ok"], d["status"], d["ms"] >= 0' <"$T/body" | grep -qx "True SAMDA_OK True" || fail "echo peer: $(cat "$T/body")"
echo "   echo to storescp: $(json_expr 'round(d["ms"],1)' <"$T/body") ms"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/destinations/closed/echo")" = 200 ] || fail "echo closed: $(cat "$T/body")"
json_expr 'd["ok"], d["status"]' <"$T/body" | grep -qx "False SAMDA_ENETWORK" || fail "echo closed port: $(cat "$T/body")"
json_expr 'd["error"]' <"$T/body" | grep -qi "refused" || fail "echo error does not say refused: $(cat "$T/body")"
# A peer that rejects the association: samdad's own DICOM port, which does not know our calling AE.
[ "$(code -X POST "${AJ[@]}" -d "{\"name\":\"self\",\"ae_title\":\"SAMDA\",\"host\":\"127.0.0.1\",\"port\":$dport}" "$H/api/v1/destinations")" = 201 ] || fail "self add"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/destinations/self/echo")" = 200 ] || fail "echo self"
json_expr 'd["ok"], d["status"]' <"$T/body" | grep -qx "False SAMDA_EFORBIDDEN" || fail "echo to a rejecting peer: $(cat "$T/body")"
echo "   echo to a peer that rejects us: $(json_expr 'd["status"] + ": " + d.get("error","")' <"$T/body")"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/destinations/nosuch/echo")" = 404 ] || fail "echo unknown not 404"
ok "C-ECHO: ok with round-trip ms against storescp; closed port ok=false SAMDA_ENETWORK 'refused'; rejected association SAMDA_EFORBIDDEN; unknown 404"

[ "$(code -X DELETE "${AA[@]}" "$H/api/v1/destinations/closed")" = 204 ] || fail "destination delete"
[ "$(code "${AA[@]}" "$H/api/v1/destinations/closed")" = 404 ] || fail "deleted destination still there"
[ "$(code -X DELETE "${AA[@]}" "$H/api/v1/destinations/closed")" = 404 ] || fail "delete twice not 404"
[ "$(code -X DELETE "${AA[@]}" "$H/api/v1/destinations/pacs-ini")" = 409 ] || fail "delete of a configuration destination not 409"
ok "destination delete 204, then 404; a configuration-file destination cannot be deleted (409)"

# ---- adapters ---------------------------------------------------------------------------------
mkst() { # mkst FILE [metadata-json] [mode]: a small safetensors file (mode: good, overlap, badjson, short)
  $PY - "$@" <<'PY'
import json, struct, sys
path = sys.argv[1]
meta = json.loads(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else None
mode = sys.argv[3] if len(sys.argv) > 3 else "good"
h = {"lora.A": {"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 32]},
     "lora.B": {"dtype": "F16", "shape": [2, 4], "data_offsets": [32, 48]}}
if meta is not None: h["__metadata__"] = meta
if mode == "overlap": h["lora.B"]["data_offsets"] = [16, 32]; h["lora.B"]["shape"] = [2, 4]
hb = json.dumps(h).encode()
if mode == "badjson": hb = hb[:-3]
hb += b" " * (-len(hb) % 8)
data = bytes(range(48))
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(hb)) + hb + data)
PY
}
UP=(-H "Authorization: Bearer $admin" -H 'Content-Type: application/octet-stream')
mkst "$T/v1.safetensors" '{"base_fingerprint":"sam-vitb-0123abcd","labels":"liver,spleen","metrics":"{\"dice\":0.91}"}'
mkst "$T/v2.safetensors" '{"base_fingerprint":"sam-vitb-0123abcd","labels":"[\"liver\"]"}'
[ "$(code "${AA[@]}" "$H/api/v1/sites/liver/adapters")" = 200 ] && json_len <"$T/body" | grep -qx 0 || fail "empty adapter list"
[ "$(code -X POST "${UP[@]}" --data-binary @"$T/v1.safetensors" -D "$T/hdr" "$H/api/v1/sites/liver/adapters")" = 201 ] || fail "upload v1: $(cat "$T/body")"
grep -qi '^Location: /api/v1/sites/liver/adapters/1' "$T/hdr" || fail "upload Location"
json_expr 'd["version"], d["parent_version"], d["active"], d["base_fingerprint"], d["labels"], d["metrics"]["dice"]' <"$T/body" \
  | grep -qx "1 None False sam-vitb-0123abcd \['liver', 'spleen'\] 0.91" || fail "v1: $(cat "$T/body")"
[ "$(code -X POST "${UP[@]}" --data-binary @"$T/v2.safetensors" "$H/api/v1/sites/liver/adapters?parent=1")" = 201 ] || fail "upload v2: $(cat "$T/body")"
json_expr 'd["version"], d["parent_version"], d["size"]' <"$T/body" | grep -qx "2 1 $(stat -c %s "$T/v2.safetensors")" || fail "v2: $(cat "$T/body")"
stored=$(find "$D/objects/adapters" -name '2.safetensors')
[ -n "$stored" ] && cmp -s "$T/v2.safetensors" "$stored" || fail "stored v2 differs from the upload"
[ "$(code -X POST "${UP[@]}" --data-binary @"$T/v2.safetensors" "$H/api/v1/sites/liver/adapters?parent=9")" = 400 ] || fail "missing parent not 400"
[ "$(code -X POST "${UP[@]}" --data-binary @"$T/v2.safetensors" "$H/api/v1/sites/nosuch/adapters")" = 404 ] || fail "upload to unknown site not 404"
[ "$(code -X POST "${AA[@]}" -H 'Content-Type: application/json' --data-binary @"$T/v2.safetensors" "$H/api/v1/sites/liver/adapters")" = 415 ] || fail "upload as JSON not 415"
ok "adapter upload: v1 (metadata: fingerprint, labels, metrics) and v2 with parent 1, 201 + Location, bytes stored; bad parent 400, unknown site 404, 415"

# Not safetensors: 400 naming the problem.
head -c 2000 /dev/urandom >"$T/noise.bin"
printf '\x10\x00\x00\x00\x00\x00\x00\x00{"a":1}' >"$T/tiny.bin"
mkst "$T/overlap.safetensors" '' overlap
mkst "$T/badjson.safetensors" '' badjson
for f in noise.bin:"not a safetensors file" tiny.bin:"larger than the file" overlap.safetensors:"overlaps" badjson.safetensors:"not JSON"; do
  [ "$(code -X POST "${UP[@]}" --data-binary @"$T/${f%%:*}" "$H/api/v1/sites/liver/adapters")" = 400 ] || fail "${f%%:*} not 400: $(cat "$T/body")"
  title | grep -q "${f#*:}" || fail "${f%%:*}: title does not say '${f#*:}': $(cat "$T/body")"
done
[ "$(code -X POST "${UP[@]}" "$H/api/v1/sites/liver/adapters")" = 400 ] || fail "empty upload not 400"
# Oversized: larger than http.max_body (3 MiB here): 413, announced or chunked.
head -c $((4 * 1024 * 1024)) /dev/zero >"$T/big.bin"
[ "$(code -X POST "${UP[@]}" --data-binary @"$T/big.bin" "$H/api/v1/sites/liver/adapters")" = 413 ] || fail "oversized upload not 413: $(cat "$T/body")"
st=$(code -X POST "${UP[@]}" -H 'Expect:' -H 'Transfer-Encoding: chunked' --data-binary @"$T/big.bin" "$H/api/v1/sites/liver/adapters" || true)
[ "$st" = 413 ] || [ "$st" = 000 ] || fail "chunked oversized upload: $st"
sleep 0.3
tmp_empty "$D" || fail "upload temp files left: $(find "$D/tmp" -type f)"
[ "$(code "${AA[@]}" "$H/api/v1/sites/liver/adapters")" = 200 ] && json_len <"$T/body" | grep -qx 2 || fail "failed uploads left versions"
ok "non-safetensors uploads 400 naming the problem (noise, header length, overlap, header JSON), empty 400, oversized 413; no temp file left"

[ "$(code -X POST "${AA[@]}" "$H/api/v1/sites/liver/adapters/rollback")" = 404 ] || fail "rollback with nothing active not 404"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/sites/liver/adapters/2/activate")" = 200 ] || fail "activate v2: $(cat "$T/body")"
json_expr 'd["version"], d["active"]' <"$T/body" | grep -qx "2 True" || fail "activate v2 body"
[ "$(code "${AA[@]}" "$H/api/v1/sites/liver")" = 200 ] && json_expr 'd["active_adapter"]' <"$T/body" | grep -qx 2 || fail "site active_adapter"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/sites/liver/adapters/7/activate")" = 404 ] || fail "activate unknown not 404"
[ "$(code -X DELETE "${AA[@]}" "$H/api/v1/sites/liver/adapters/2")" = 409 ] || fail "delete active not 409"
title | grep -q "is active" || fail "delete active title"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/sites/liver/adapters/rollback")" = 200 ] || fail "rollback: $(cat "$T/body")"
json_expr 'd["version"], d["active"]' <"$T/body" | grep -qx "1 True" || fail "rollback did not activate v1: $(cat "$T/body")"
[ "$(code -X DELETE "${AA[@]}" "$H/api/v1/sites/liver/adapters/2")" = 204 ] || fail "delete v2: $(cat "$T/body")"
[ "$(code -X DELETE "${AA[@]}" "$H/api/v1/sites/liver/adapters/1")" = 409 ] || fail "delete active v1 not 409"
[ "$(code -X DELETE "${AA[@]}" "$H/api/v1/sites/liver/adapters/2")" = 404 ] || fail "delete v2 twice not 404"
[ "$(code "${AA[@]}" "$H/api/v1/sites/liver/adapters")" = 200 ] || fail "list"
json_expr '[(a["version"], a["active"], a["parent_version"]) for a in d]' <"$T/body" | grep -qx "\[(1, True, None)\]" || fail "final list: $(cat "$T/body")"
[ -z "$(find "$D/objects/adapters" -name '2.safetensors')" ] || fail "deleted version's file remains"
ok "adapter lifecycle: activate v2, delete active 409, rollback -> v1, delete v2 204 (file gone), delete active v1 409"

# Training and evaluation need the model worker: 501 problem+json.
[ "$(code -X POST "${AA[@]}" "$H/api/v1/sites/liver/adapters/train")" = 501 ] || fail "train not 501"
title | grep -q "needs the model worker" || fail "train title: $(cat "$T/body")"
[ "$(code -X POST "${AA[@]}" "$H/api/v1/sites/liver/adapters/1/evaluate")" = 501 ] || fail "evaluate not 501"
ok "train and evaluate answer 501 'needs the model worker'"

# ---- audit: every admin call is recorded ---------------------------------------------------------
sleep 0.3
sqlite3 "$D/index.sqlite3" "select action from audit_log" >"$T/audit"
for a in "http PUT /api/v1/sites/{site}" "http POST /api/v1/destinations" "http POST /api/v1/destinations/{name}/echo" \
         "http DELETE /api/v1/destinations/{name}" "http POST /api/v1/sites/{site}/adapters" \
         "http POST /api/v1/sites/{site}/adapters/{version}/activate" "http POST /api/v1/sites/{site}/adapters/rollback" \
         "http DELETE /api/v1/sites/{site}/adapters/{version}" "http GET /api/v1/sites"; do
  grep -qxF "$a" "$T/audit" || fail "no audit entry for $a"
done
n403=$(sqlite3 "$D/index.sqlite3" "select count(*) from audit_log where outcome='denied' and action like 'http % /api/v1/%'")
[ "$n403" -ge 15 ] || fail "denied admin calls not audited ($n403)"
ok "audit log has every admin action, denied ones included"


# ---- OHIF readiness: QIDO attributes and keys OHIF sends, CORS preflight --------------------------
if [ -d "$MR" ]; then
  mkdir -p "$T/named"
  $PY - "$MR" "$T/named" <<'PY'
import os, sys, pydicom
from pydicom.uid import generate_uid
src, dst = sys.argv[1], sys.argv[2]
study, series = generate_uid(), generate_uid()
for f in sorted(os.listdir(src))[:3]:
    ds = pydicom.dcmread(os.path.join(src, f))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SOPInstanceUID = generate_uid(); ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName = "DOE^JANE^Q"; ds.PatientID = "PN-TEST-1"
    ds.save_as(os.path.join(dst, f))
print(study)
PY
  $PY "$(dirname "$0")/stow.py" "$H/dicomweb/studies" "$admin" "$T"/named/*.dcm >"$T/stow.out"
  [ "$(head -1 "$T/stow.out")" = 200 ] || fail "STOW of the named copy: $(head -c 600 "$T/stow.out")"
  UA=(-H "Authorization: Bearer $user")
  q() { [ "$(code "${UA[@]}" "$H/dicomweb/$1")" = 200 ] && json_len <"$T/body"; }
  [ "$(q 'studies?PatientName=doe*')" = 1 ] || fail "PatientName=doe* (case-insensitive wildcard): $(cat "$T/body")"
  [ "$(q 'studies?PatientName=*JANE*&fuzzymatching=false')" = 1 ] || fail "PatientName=*JANE*"
  [ "$(q 'studies?PatientName=jan&fuzzymatching=true')" = 1 ] || fail "fuzzy PatientName=jan"
  [ "$(q 'studies?PatientName=jan')" = 0 ] || fail "PatientName=jan without fuzzy matched"
  [ "$(q 'studies?PatientName=SMITH*')" = 0 ] || fail "PatientName=SMITH* matched"
  [ "$(q 'studies?00100010=DOE%5EJANE%5EQ&StudyDescription=BRAIN')" = 1 ] || fail "exact PN + StudyDescription"
  [ "$(q 'series?PatientName=Doe*&Modality=MR')" = 1 ] || fail "series-level PatientName"
  [ "$(q 'studies?PatientName=*&limit=101&offset=0&fuzzymatching=true&includefield=00081030%2C00080060')" -ge 2 ] || fail "OHIF study list query"
  ok "QIDO PatientName: case-insensitive wildcards, fuzzymatching=true prefix of a component, series level; StudyDescription; OHIF's study-list query"
  study=$(dcmdump -q +P 0020,000D "$MR/brain_001.dcm" | sed 's/.*\[\(.*\)\].*/\1/')
  [ "$(code "${UA[@]}" "$H/dicomweb/studies/$study/series?includefield=00080021,00080031,0008103E,00200011,00201209,00080060")" = 200 ] || fail "OHIF series query"
  json_expr 'all(k in d[0] for k in ["00080021","00080031","0008103E","00200011","00201209","00080060","0020000E"])' <"$T/body" | grep -qx True || fail "series attributes: $(cat "$T/body")"
  json_expr 'd[0]["00080021"]["Value"][0], d[0]["00080031"]["Value"][0]' <"$T/body" | grep -qx "20010316 143414" || fail "SeriesDate/SeriesTime from the file: $(cat "$T/body")"
  series=$(json_expr 'd[0]["0020000E"]["Value"][0]' <"$T/body")
  [ "$(code "${UA[@]}" "$H/dicomweb/studies/$study/series/$series/instances?includefield=00080018,00080016,00200013,00280010,00280011")" = 200 ] || fail "OHIF instance query"
  json_expr 'all("Value" in d[0][k] for k in ["00080018","00080016","00200013","00280010","00280011"])' <"$T/body" | grep -qx True || fail "instance attributes: $(cat "$T/body")"
  ok "QIDO series (00080021 00080031 read from the stored file 0008103E 00200011 00201209 00080060) and instance (00080018 00080016 00200013 00280010 00280011) attributes OHIF asks for"
fi

# ---- WADO-RS metadata and frames (DICOM JSON from the stored files) --------------------------------
if [ -d "$MR" ]; then
  for glob in 'brain_001' 'brain_00[2-9]' 'brain_01*' 'brain_02*'; do # in parts: this daemon's http.max_body is 3 MiB
    $PY "$(dirname "$0")/stow.py" "$H/dicomweb/studies" "$admin" $MR/$glob.dcm >"$T/stow.out"
    # brain_001..003 came earlier by C-STORE (stored as received, other bytes): those parts fail 0x0111
    case "$(head -1 "$T/stow.out")" in 200|202|409) ;; *) fail "STOW of the MR series ($glob): $(head -c 600 "$T/stow.out")" ;; esac
  done
  sop=$(dcmdump -q +P 0008,0018 "$MR/brain_001.dcm" | sed 's/.*\[\(.*\)\].*/\1/')
  mrseries=$(dcmdump -q +P 0020,000E "$MR/brain_001.dcm" | sed 's/.*\[\(.*\)\].*/\1/')
  [ "$(code "${UA[@]}" "$H/dicomweb/studies/$study/series/$mrseries/metadata")" = 200 ] || fail "series metadata: $(head -c 300 "$T/body")"
  cp "$T/body" "$T/meta.json"
  $PY "$(dirname "$0")/wado_check.py" "$T/meta.json" "$H" "$user" "$MR"/*.dcm >"$T/wado.out" || fail "metadata/frames differ: $(cat "$T/wado.out")"
  echo "   $(cat "$T/wado.out") (instances, attributes compared)"
  [ "$(code "${UA[@]}" "$H/dicomweb/studies/$study/series/$mrseries/instances/$sop/metadata")" = 200 ] && json_len <"$T/body" | grep -qx 1 || fail "instance metadata"
  [ "$(code "${UA[@]}" "$H/dicomweb/studies/$study/metadata")" = 200 ] && [ "$(json_len <"$T/body")" -ge 20 ] || fail "study metadata"
  [ "$(code "${UA[@]}" "$H/dicomweb/studies/$study/series/$mrseries/instances/$sop/frames/2")" = 404 ] || fail "frame 2 of a single-frame instance not 404"
  title | grep -q "frame 2" || fail "frame 404 title: $(cat "$T/body")"
  [ "$(code "${UA[@]}" "$H/dicomweb/studies/$study/series/1.2.3/metadata")" = 404 ] || fail "unknown series metadata not 404"
  [ "$(code "${UA[@]}" "$H/dicomweb/studies/$study/series/$mrseries/instances/$sop/frames/1" -H 'Accept: image/jpeg')" = 406 ] || fail "frames with Accept image/jpeg not 406"
  ok "WADO-RS metadata of the MR series parsed by pydicom Dataset.from_json equals the files; PixelData BulkDataURI = frames URL whose bytes equal the file's; 404s"
fi
curl -s -o /dev/null -D "$T/pre" -X OPTIONS -H 'Origin: http://localhost:3000' -H 'Access-Control-Request-Method: GET' \
  -H 'Access-Control-Request-Headers: authorization,accept' "$H/dicomweb/studies" -w '%{http_code}' >"$T/pre.code"
[ "$(cat "$T/pre.code")" = 204 ] || fail "preflight status $(cat "$T/pre.code")"
grep -qi '^Access-Control-Allow-Origin: http://localhost:3000' "$T/pre" || fail "preflight origin: $(cat "$T/pre")"
grep -i '^Access-Control-Allow-Methods:' "$T/pre" | grep -q GET || fail "preflight methods"
grep -i '^Access-Control-Allow-Headers:' "$T/pre" | grep -qi authorization || fail "preflight headers"
curl -s -o /dev/null -D "$T/get" -H 'Origin: http://localhost:3000' -H "Authorization: Bearer $user" "$H/dicomweb/studies"
grep -qi '^Access-Control-Allow-Origin: http://localhost:3000' "$T/get" || fail "GET lacks Access-Control-Allow-Origin"
curl -s -o /dev/null -D "$T/pre2" -X OPTIONS -H 'Origin: http://localhost:3000' -H 'Access-Control-Request-Method: PUT' "$H/api/v1/sites/liver"
grep -i '^Access-Control-Allow-Methods:' "$T/pre2" | grep -q PUT || fail "preflight for PUT on a site"
ok "CORS: preflight from the OHIF origin (204, origin, methods, Authorization allowed) and the origin on answers"

kill -TERM "$(cat "$T/d.pid")"
wait_exit "$(cat "$T/d.pid")" 20
[ "$WAIT_RC" = 0 ] || fail "samdad exit status $WAIT_RC"
# After a restart the API site is still in effect.
start_samdad d2 "$T/s.conf"
wait_for_text "$T/d2.log" 'msg="ready"'
[ "$(code "${AA[@]}" "$H/api/v1/sites/liver")" = 200 ] && json_expr 'd["source"], d["settings"]["min_slices"], d["active_adapter"]' <"$T/body" | grep -qx "api 3 1" || fail "after restart: $(cat "$T/body")"
ok "after a restart the API site and its active adapter are still there"
