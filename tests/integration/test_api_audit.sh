#!/usr/bin/env bash
# GET /api/v1/audit (the console's Audit log page) against the real core, no model needed: admin
# only (user 403, no token 401), newest first, filtered by actor, action, time and id (before),
# limit, bad parameters refused with 400 naming them, and reading the log is itself audited.
. "$(dirname "$0")/lib.sh"
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" '[destination pacs]' 'ae_title = PACS' 'host = 127.0.0.1' 'port = 1'
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"'
D="$T/data"; H="http://127.0.0.1:$hport"
admin=$("$SAMDA" token create ops --role admin --data-dir "$D" 2>/dev/null)
user=$("$SAMDA" token create viewer --role user --data-dir "$D" 2>/dev/null)
AA=(-H "Authorization: Bearer $admin"); UA=(-H "Authorization: Bearer $user")
admin_id=$("$SAMDA" token list --data-dir "$D" | awk '$2 == "ops" {print $1}')
user_id=$("$SAMDA" token list --data-dir "$D" | awk '$2 == "viewer" {print $1}')

[ "$(code "${UA[@]}" "$H/api/v1/audit")" = 403 ] && grep -q "needs role admin" "$T/body" || fail "user token on the audit log: $(cat "$T/body")"
[ "$(code "$H/api/v1/audit")" = 401 ] || fail "no token on the audit log"
# some entries: three admin reads of destinations, one denied user read, one C-ECHO
for i in 1 2 3; do [ "$(code "${AA[@]}" "$H/api/v1/destinations")" = 200 ] || fail "destinations"; done
[ "$(code "${UA[@]}" "$H/api/v1/destinations")" = 403 ] || fail "user destinations"
t_mid=$(($(date +%s%3N)))
sleep 0.05
[ "$(code -X POST "${AA[@]}" "$H/api/v1/destinations/pacs/echo")" = 200 ] || fail "echo: $(cat "$T/body")"

[ "$(code "${AA[@]}" "$H/api/v1/audit")" = 200 ] || fail "audit: $(cat "$T/body")"
cp "$T/body" "$T/all.json"
"$SAMDA" audit --data-dir "$D" >"$T/cli.json"
$PY - "$T/all.json" "$T/cli.json" <<'PY' || fail "the route's entries are not the log's: $(head -c 600 "$T/all.json")"
import json, sys
api, cli = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
ids = [e["id"] for e in api]
assert ids == sorted(ids, reverse=True), "not newest first: %s" % ids
byid = {e["id"]: e for e in cli}
for e in api:
    c = byid[e["id"]]
    assert all(e.get(k) == c.get(k) for k in ("time_ms", "actor", "action", "resource", "outcome", "details")), (e, c)
assert len(api) == min(100, len([e for e in cli if e["id"] <= ids[0]])), (len(api), len(cli))
PY
ok "GET /api/v1/audit: newest first, each entry as samda audit lists it; user 403, no token 401"

q() { code "${AA[@]}" "$H/api/v1/audit?$1"; }
[ "$(q "actor=token:$user_id")" = 200 ] && json_expr '[(e["actor"], e["action"], e["outcome"]) for e in d]' <"$T/body" |
  grep -qxF "[('token:$user_id', 'http GET /api/v1/destinations', 'denied'), ('token:$user_id', 'http GET /api/v1/audit', 'denied')]" ||
  fail "actor filter: $(cat "$T/body")"
[ "$(q "action=destinations&actor=token:$admin_id&limit=2")" = 200 ] &&
  json_expr '[e["action"] for e in d]' <"$T/body" | grep -qxF "['http POST /api/v1/destinations/{name}/echo', 'http GET /api/v1/destinations']" ||
  fail "action filter with limit: $(cat "$T/body")"
[ "$(q "action=destinations&since_ms=$t_mid")" = 200 ] && json_expr '[e["action"] for e in d]' <"$T/body" |
  grep -qxF "['http POST /api/v1/destinations/{name}/echo']" || fail "since_ms: $(cat "$T/body")"
[ "$(q "action=destinations&until_ms=$t_mid")" = 200 ] && json_expr 'len(d), all("echo" not in e["action"] for e in d)' <"$T/body" |
  grep -qx "4 True" || fail "until_ms: $(cat "$T/body")"
first=$(json_expr 'd[-1]["id"]' <"$T/all.json")
second=$(json_expr 'd[-2]["id"]' <"$T/all.json")
[ "$(q "before=$second")" = 200 ] && json_expr '[e["id"] for e in d]' <"$T/body" | grep -qx "\[$first\]" || fail "before: $(cat "$T/body")"
ok "filters: actor, action (with limit), since_ms, until_ms, before"

for bad in "limit=0" "limit=1001" "since_ms=x" "before=0" "actor=" "nope=1" "action=$(printf 'a%.0s' {1..129})"; do
  [ "$(q "$bad")" = 400 ] || fail "audit?$bad: $(cat "$T/body")"
done
q "actor=%01" >/dev/null; [ "$(q "actor=%01")" = 400 ] && grep -q "query parameter actor must be 1 to 128 printable ASCII" "$T/body" ||
  fail "a control character in actor: $(cat "$T/body")"
"$SAMDA" audit --data-dir "$D" | json_expr 'sum(1 for e in d if e["action"] == "http GET /api/v1/audit" and e["actor"] == "token:'"$admin_id"'")' |
  grep -qxE '[0-9]{2}' || fail "reading the audit log is not audited"
ok "bad limits, numbers, empty or non-ASCII text and unknown parameters: 400; every read of the log is audited"
