#!/usr/bin/env bash
# Dashboards and alerts for the people on call (issue 21): deploy/prometheus/samda-alerts.yml passes
# `promtool check rules`, and `promtool test rules` fires every alert on its case and keeps it quiet
# on another (alert_cases.py); deploy/prometheus/prometheus.yml passes `promtool check config`. Then
# a live samdad (demo model, a destination that is down) receives and segments a study and answers an
# interactive prediction while Prometheus (Debian's) scrapes it every second: every query of every
# panel of deploy/grafana/samda-dashboard.json returns data, every alert expression evaluates, and
# the loaded rules are healthy.
. "$(dirname "$0")/lib.sh"
DEMO="$SAMDA_SOURCE_DIR/deploy/demo"
RULES="$SAMDA_SOURCE_DIR/deploy/prometheus/samda-alerts.yml"
DASH="$SAMDA_SOURCE_DIR/deploy/grafana/samda-dashboard.json"
command -v promtool >/dev/null && command -v prometheus >/dev/null ||
  { echo "SKIP: promtool/prometheus missing (Debian package prometheus; deploy/install-deps.sh installs it)"; exit 77; }
[ -f "$DEMO/sam_demo_base.pth" ] || { echo "SKIP: no demo model"; exit 77; }

promtool check rules "$RULES" >"$T/check.out" 2>&1 || fail "promtool check rules: $(cat "$T/check.out")"
promtool check config "$SAMDA_SOURCE_DIR/deploy/prometheus/prometheus.yml" >"$T/check.out" 2>&1 ||
  fail "promtool check config: $(cat "$T/check.out")"
$PY "$(dirname "$0")/alert_cases.py" "$RULES" "$T/alerts.test.yml" || fail "alert cases"
promtool test rules "$T/alerts.test.yml" >"$T/test.out" 2>&1 || fail "promtool test rules: $(cat "$T/test.out")"
ok "alert rules: promtool check and test rules pass (each alert fires on its case, stays quiet on another)"

"$SAMDA" phantom --out "$T/ph" --site A --count 16 --seed 5 --slices-per-body 16 --dicom >/dev/null || fail "phantom"
dport=$(free_port); hport=$(free_port); pport=$(free_port); mport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" \
  "[model]" "checkpoint = $DEMO/sam_demo_base.pth" "adapter = $DEMO/site_A_adapter.safetensors" "device = cpu" \
  "[destination pacs]" "ae_title = PACS" "host = 127.0.0.1" "port = $pport"
sed -i 's/^max_wait = 1h/max_wait = 1h\ndestinations = pacs/' "$T/s.conf"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"' 60
H="http://127.0.0.1:$hport"
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$T/ph/dicom/A_00000" || fail "storescu"
wait_for_text "$T/d.log" 'msg="job done: DICOM-SEG recorded"' 240
user=$("$SAMDA" token create viewer --role user --data-dir "$T/data" 2>/dev/null)
UJ=(-H "Authorization: Bearer $user" -H 'Content-Type: application/json')
inst=$($PY -c "import pydicom,sys,os; d=sys.argv[1]; print(pydicom.dcmread(os.path.join(d, sorted(os.listdir(d))[8])).SOPInstanceUID)" "$T/ph/dicom/A_00000")
[ "$(code -X POST "${UJ[@]}" -d "{\"instance\":\"$inst\"}" "$H/api/v1/sessions")" = 201 ] || fail "session: $(cat "$T/body")"
sid=$(json_expr 'd["id"]' <"$T/body")
[ "$(code -X POST "${UJ[@]}" -d '{"box":[60,60,180,180]}' "$H/api/v1/sessions/$sid/predict")" = 200 ] || fail "predict"
ok "samdad with a study segmented, a prediction answered and a destination down"

mkdir -p "$T/prom"
cp "$RULES" "$T/prom/samda-alerts.yml"
cat >"$T/prom/prometheus.yml" <<YML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [samda-alerts.yml]
scrape_configs:
  - job_name: samda
    static_configs: [{targets: ['127.0.0.1:$hport']}]
YML
prometheus --config.file="$T/prom/prometheus.yml" --storage.tsdb.path="$T/prom/data" \
  --web.listen-address="127.0.0.1:$mport" --log.level=warn >"$T/prom.log" 2>&1 &
_pids+=($!)
P="http://127.0.0.1:$mport"
enough() { curl -sf "$P/api/v1/query" --data-urlencode 'query=count_over_time(up{job="samda"}[1m]) >= 6' |
  $PY -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["data"]["result"] else 1)'; }
wait_for_cmd 60 enough || fail "Prometheus did not scrape samdad: $(tail -5 "$T/prom.log")"
# one more exchange between scrapes, so that rates over the last seconds are not all zero
curl -sf -o /dev/null "$H/health"
code -X POST "${UJ[@]}" -d '{"box":[70,70,170,170]}' "$H/api/v1/sessions/$sid/predict" >/dev/null
sleep 3

$PY - "$DASH" "$RULES" "$P" <<'PY' || fail "dashboard or alert queries"
import json, sys, urllib.parse, urllib.request
import yaml
dash, rules, prom = json.load(open(sys.argv[1])), yaml.safe_load(open(sys.argv[2])), sys.argv[3]
def query(expr):
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    d = json.load(urllib.request.urlopen(url, timeout=10))
    assert d["status"] == "success", (expr, d)
    return d["data"]["result"]
panels = [p for p in dash["panels"] if p["type"] != "row"]
assert len(panels) >= 15, len(panels)
ds = {v["name"] for v in dash["templating"]["list"]}
assert {"datasource", "destination"} <= ds, ds
empty = []
for p in panels:
    assert p.get("description") and p["datasource"]["uid"] == "${datasource}", p["title"]
    for t in p["targets"]:
        expr = t["expr"].replace("$__rate_interval", "20s").replace("$destination", ".*")
        res = query(expr)
        if not res:
            empty.append((p["title"], expr))
        else:
            print("panel %-50s %-3s %d series, e.g. %s" % (p["title"][:50], t["refId"], len(res), res[0]["value"][1]))
assert not empty, "panels without data: %s" % empty
dest = query('samda_export_backlog{destination="pacs"} + samda_export_failed{destination="pacs"}')
assert dest and float(dest[0]["value"][1]) >= 1, ("the SEG for the down destination is not counted", dest)
n = 0
for g in rules["groups"]:
    for r in g["rules"]:
        query(r["expr"]); n += 1
loaded = json.load(urllib.request.urlopen(prom + "/api/v1/rules", timeout=10))["data"]["groups"]
bad = [(r["name"], r.get("lastError")) for g in loaded for r in g["rules"] if r.get("health") not in ("ok",)]
assert sum(len(g["rules"]) for g in loaded) == n and not bad, (n, bad)
print("%d panels, %d alert expressions evaluated, %d rules loaded healthy" % (len(panels), n, n))
PY
ok "every panel of the Grafana dashboard has data from the live samdad; every alert expression evaluates; rules healthy"
