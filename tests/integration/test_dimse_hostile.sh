#!/usr/bin/env bash
# Hostile DIMSE peers (issue 14), sent with a raw client of our own (dimse_raw.py) where storescu
# cannot: a data set trickled in small PDVs past [dicom] message_timeout is aborted, not stored, and
# logged naming the peer; max_associations_per_peer tricklers cannot lock out a normal storescu, and
# one more association of theirs is rejected (transient, local limit exceeded) and logged; a
# C-STORE-RQ with an empty or 65-character Affected SOP Instance UID, a data set with an odd-length
# PDV and a data set that differs from its command are answered with a failure status whose
# ErrorComment names the problem, and the same association then stores; a command without a Message
# ID aborts the association with a logged cause. samdad answers C-ECHO after each.
. "$(dirname "$0")/lib.sh"
MR="$FIXTURES/dicom/mr-brain-20"
[ -d "$MR" ] || { echo "SKIP: fixtures not found at $FIXTURES"; exit 77; }
RAW="$(cd "$(dirname "$0")" && pwd)/dimse_raw.py"
dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport" "[peer raw]" "ae_title = RAWSCU" "[peer trickle]" "ae_title = TRICKLE"
start_samdad d "$T/s.conf" --set dicom.message_timeout=4s
wait_for_text "$T/d.log" 'msg="ready"'
D="$T/data"
raw() { $PY "$RAW" 127.0.0.1 "$dport" "$@"; }
alive() { echoscu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" >/dev/null 2>&1 || fail "no C-ECHO answer after: $1"; }
sop() { dcmdump -q +P 0008,0018 "$1" | sed 's/.*\[\(.*\)\].*/\1/'; }
stored() { [ -n "$(find "$D/objects" -name "$(sop "$1").dcm" 2>/dev/null)" ]; }
# field LINE KEY: a value of one JSON line of dimse_raw.py
field() { $PY -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$1" "$2"; }
# the store step's line ($2-th line of file $1)
line() { sed -n "${2}p" "$1"; }
TRICKLE=pdv=4096:delay=0.25 # 132 KB in 33 PDVs, one every 0.25 s: about 8 s, each PDV far within dimse_timeout

# 1. Message deadline: trickled past message_timeout (4 s): aborted, not stored, logged with the
#    peer's AE title and address. Trickled within it: stored.
raw --calling TRICKLE "store:$MR/brain_003.dcm:$TRICKLE" >"$T/t1.out" || true
r=$(line "$T/t1.out" 2); res=$(field "$r" result); t=$(field "$r" t)
[ "$res" = aborted ] || [ "$res" = closed ] || fail "trickled instance: $(cat "$T/t1.out")"
$PY -c "import sys; sys.exit(0 if float('$t') < 7 else 1)" || fail "trickled instance cut only after ${t}s (message_timeout 4s)"
wait_for_text "$T/d.log" 'msg="association aborted" assoc=[0-9]* calling_ae="TRICKLE" called_ae="SAMDA" peer=127.0.0.1 reason="C-STORE data set not complete within message_timeout (4 s)"' 5
stored "$MR/brain_003.dcm" && fail "the trickled instance was stored"
wait_for_cmd 5 tmp_empty "$D"
raw --calling TRICKLE "store:$MR/brain_004.dcm:pdv=16384:delay=0.1" release >"$T/t1b.out" || fail "$(cat "$T/t1b.out")"
[ "$(field "$(line "$T/t1b.out" 2)" status_hex)" = 0000 ] || fail "trickled within the deadline: $(cat "$T/t1b.out")"
stored "$MR/brain_004.dcm" || fail "the instance trickled within the deadline was not stored"
alive "message deadline"
ok "trickled past message_timeout: aborted after ${t}s, not stored, logged naming AE and address; within it: stored"

# 2. Per-peer cap: 4 tricklers (the default max_associations_per_peer) hold their slots; a 5th of
#    theirs is rejected-transient and logged; storescu stores meanwhile.
for i in 1 2 3 4; do
  raw --calling TRICKLE "store:$MR/brain_01$i.dcm:$TRICKLE" >"$T/c$i.out" 2>&1 & _pids+=($!)
done
wait_for_cmd 10 bash -c "[ \$(cat '$T'/c?.out | grep -c '\"accepted\"') = 4 ]"
raw --calling TRICKLE echo >"$T/c5.out" || true
[ "$(field "$(line "$T/c5.out" 1)" rj)" = "[2, 3, 2]" ] ||
  fail "the 5th association of one peer was not rejected-transient/local-limit-exceeded: $(cat "$T/c5.out")"
grep -q 'msg="association rejected" assoc=[0-9]* calling_ae="TRICKLE" called_ae="SAMDA" peer=127.0.0.1 reason="this calling AE title already has 4 associations (max_associations_per_peer)"' "$T/d.log" ||
  fail "the per-peer rejection is not logged: $(grep 'association rejected' "$T/d.log" | tail -2)"
storescu -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" "$MR/brain_015.dcm" "$MR/brain_016.dcm" >"$T/s2.out" 2>&1 ||
  fail "storescu locked out by the tricklers: $(tail -3 "$T/s2.out")"
for i in 1 2 3 4; do [ "$(wc -l <"$T/c$i.out")" = 1 ] || fail "trickler $i ended before storescu stored: $(cat "$T/c$i.out")"; done
stored "$MR/brain_015.dcm" && stored "$MR/brain_016.dcm" || fail "storescu's instances not indexed"
wait_for_cmd 10 bash -c "[ \$(cat '$T'/c?.out | grep -cE '\"(aborted|closed)\"') = 4 ]"
for i in 1 2 3 4; do stored "$MR/brain_01$i.dcm" && fail "trickler $i's instance was stored"; done
alive "per-peer cap"
ok "4 tricklers of one AE title: a 5th association rejected (2,3,2) and logged; storescu stored meanwhile; none of theirs stored"

# 3. Command and PDV errors answered with a status naming the problem; the association goes on.
f=$MR/brain_005.dcm
raw --calling RAWSCU "store:$f:uid=empty" "store:$f:uid=65" "store:$f:odd=1" "store:$f:uid=1.2.3.4" \
  "store:$MR/brain_006.dcm" echo release >"$T/p.out" || fail "protocol errors: $(cat "$T/p.out")"
expect() { # N STATUS COMMENT
  local r; r=$(line "$T/p.out" "$1")
  [ "$(field "$r" status_hex)" = "$2" ] && [ "$(field "$r" comment)" = "$3" ] || fail "step $1: expected $2 \"$3\", got $r"
}
expect 2 C000 "(0000,1000) AffectedSOPInstanceUID empty"
expect 3 C000 "(0000,1000) AffectedSOPInstanceUID is 65 characters (max 64)"
expect 4 C000 "data set PDV of odd length (1001 bytes)"
expect 5 A900 "(0008,0018) SOPInstanceUID differs from AffectedSOPInstanceUID"
expect 6 0000 ""
[ "$(field "$(line "$T/p.out" 8)" result)" = released ] || fail "association not released: $(cat "$T/p.out")"
stored "$f" && fail "an instance refused for its command was stored"
stored "$MR/brain_006.dcm" || fail "the good instance after the refusals was not stored"
grep -q 'msg="instance refused" assoc=[0-9]* status=C000 error="C-STORE-RQ refused: (0000,1000) AffectedSOPInstanceUID empty"' "$T/d.log" ||
  fail "refusal not logged"
alive "protocol errors"
ok "empty and 65-character Affected SOP Instance UID, odd-length PDV: C000; mismatch: A900; each naming the problem; then stored"

# 4. A command without a Message ID cannot be answered: aborted, the cause logged.
raw --calling RAWSCU "store:$MR/brain_007.dcm:nomsgid=1" >"$T/n.out" || true
res=$(field "$(line "$T/n.out" 2)" result)
[ "$res" = aborted ] || [ "$res" = closed ] || fail "command without Message ID: $(cat "$T/n.out")"
wait_for_text "$T/d.log" 'msg="association aborted" assoc=[0-9]* calling_ae="RAWSCU" called_ae="SAMDA" peer=127.0.0.1 reason="DIMSE command cannot be read: .*MessageID' 5
stored "$MR/brain_007.dcm" && fail "the instance of an unreadable command was stored"
wait_for_cmd 5 tmp_empty "$D"
alive "command without Message ID"
ok "command without a Message ID: association aborted, cause logged"

kill -TERM "$(cat "$T/d.pid")"; wait_exit "$(cat "$T/d.pid")" 15
[ "$WAIT_RC" = 0 ] || fail "samdad exited with $WAIT_RC"
ok "samdad stopped cleanly"
