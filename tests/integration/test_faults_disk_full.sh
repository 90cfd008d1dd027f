#!/usr/bin/env bash
# Fault: the data directory fills up during ingest. The data directory is a size-limited tmpfs
# (needs root to mount; skipped with 77 otherwise); a filler file leaves room for a few instances
# only, and storage.min_free is 0 so the real ENOSPC path is taken, not the watermark check.
# Expected: instances that do not fit are refused with A700 (Out of Resources) and a log line;
# every acknowledged instance is indexed and readable; no partial files stay in tmp/ or objects/;
# once the filler is deleted the same daemon (no restart) accepts the rest of the series.
. "$(dirname "$0")/lib.sh"
MR="$FIXTURES/dicom/mr-brain-20"
[ -d "$MR" ] || { echo "SKIP: fixtures not found at $FIXTURES"; exit 77; }
mkdir -p "$T/data"
if ! mount -t tmpfs -o size=6M tmpfs "$T/data" 2>"$T/mount.err"; then
  echo "SKIP: cannot mount a size-limited tmpfs (needs root): $(cat "$T/mount.err")"
  exit 77
fi
umount_data() { umount "$T/data" 2>/dev/null || true; }
trap 'for p in "${_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null; umount_data; cleanup' EXIT

dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport"
start_samdad d "$T/s.conf" --set storage.min_free=0
wait_for_text "$T/d.log" 'msg="ready"'
D="$T/data"
indexed() { "$SAMDA" series --data-dir "$D" | json_expr 'sum(s["instances"] for s in d)'; }

# Leave about 700 KB: room for a few of the ~130 KB instances plus index growth.
avail=$(df -B1 --output=avail "$D" | tail -1)
dd if=/dev/zero of="$D/filler" bs=4096 count=$(((avail - 700 * 1024) / 4096)) status=none
ok "tmpfs data directory with $(df -B1 --output=avail "$D" | tail -1) bytes free"

rc=0
storescu -v -nh -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$MR" >"$T/s1.out" 2>&1 || rc=$?
n_ok=$(grep -c "Received Store Response (Success)" "$T/s1.out" || true)
n_a700=$(grep -c "Received Store Response (Refused: OutOfResources)" "$T/s1.out" || true)
echo "first send: rc=$rc success=$n_ok out_of_resources=$n_a700"
[ "$n_ok" -ge 1 ] || fail "nothing fitted: $(grep -v DcmItem "$T/s1.out" | tail -5)"
[ "$n_a700" -ge 1 ] || fail "no instance refused with A700: $(grep -v DcmItem "$T/s1.out" | tail -5)"
[ $((n_ok + n_a700)) = 20 ] || fail "responses other than Success/A700: $(grep 'Store Response' "$T/s1.out" | sort | uniq -c)"
grep -q 'msg="instance refused".*status=A700' "$T/d.log" || fail "no A700 refusal in the log: $(tail -5 "$T/d.log")"
grep 'msg="instance refused".*status=A700' "$T/d.log" | head -1 | sed 's/^/log: /'
kill -0 "$(cat "$T/d.pid")" || fail "samdad died"
[ "$(indexed)" = "$n_ok" ] || fail "index holds $(indexed) instances, $n_ok were acknowledged"
tmp_empty "$D" || fail "partial files left in tmp/: $(find "$D/tmp" -type f)"
n_files=$(find "$D/objects" -type f -name '*.dcm' | wc -l)
[ "$n_files" = "$n_ok" ] || fail "$n_files object files for $n_ok acknowledged instances"
ok "disk full: $n_ok acknowledged and indexed, $n_a700 refused with A700, no partial files"

# The disk completely full: every read of images is audited or refused (503), never answered
# unaudited; /health says the disk fails (0 bytes free, below the 1 MiB floor, although min_free is 0).
user=$("$SAMDA" token create reader --role user --data-dir "$D" 2>/dev/null) || true
study=$($PY -c "import pydicom,sys; print(pydicom.dcmread(sys.argv[1]).StudyInstanceUID)" "$MR/brain_001.dcm")
dd if=/dev/zero of="$D/filler2" bs=4096 status=none 2>/dev/null || true
H="http://127.0.0.1:$hport"
n200=0; n503=0
for i in $(seq 1 60); do
  c=$(code -H "Authorization: Bearer $user" "$H/dicomweb/studies/$study/metadata")
  case $c in
    200) n200=$((n200 + 1)) ;;
    503) grep -q "access not audited, so refused" "$T/body" || fail "503 without the reason: $(cat "$T/body")"
         grep -q '"00100010"' "$T/body" && fail "a refused access carried patient data"
         n503=$((n503 + 1)) ;;
    *) fail "metadata answered $c: $(head -c 300 "$T/body")" ;;
  esac
  [ $n503 -ge 3 ] && break
done
echo "disk full: metadata answered 200 x $n200 (audited), 503 x $n503 (could not be audited)"
[ $n503 -ge 1 ] || fail "no access was refused although the disk is full"
c=$(code "$H/health"); [ "$c" = 503 ] || fail "/health answered $c on a full disk: $(cat "$T/body")"
json_expr 'd["checks"]["disk"]["status"]' <"$T/body" | grep -qx fail || fail "/health disk check: $(cat "$T/body")"
rm -f "$D/filler2"
audited=$("$SAMDA" audit --data-dir "$D" | json_expr 'len([e for e in d if e["action"].endswith("/metadata") and e["outcome"] == "ok"])')
[ "$audited" = "$n200" ] || fail "$n200 metadata answers sent, $audited audited"
grep -q 'msg="access refused: the audit log cannot record it"' "$T/d.log" || fail "the refusals are not logged"
ok "disk full: each metadata answer audited ($n200) or refused with 503 ($n503); /health reports the disk failing"

# Free the space: the running daemon takes the rest (duplicates of the stored ones are identical).
rm -f "$D/filler"
storescu -v -aet STORESCU -aec SAMDA 127.0.0.1 "$dport" +sd "$MR" >"$T/s2.out" 2>&1 || fail "send after freeing space failed: $(grep -v DcmItem "$T/s2.out" | tail -5)"
[ "$(grep -c "Received Store Response (Success)" "$T/s2.out")" = 20 ] || fail "not all 20 accepted after freeing space"
[ "$(indexed)" = 20 ] || fail "index holds $(indexed) instances after the re-send, expected 20"
[ "$(cat "$T/d.pid")" = "$(pgrep -f "$SAMDAD --config $T/s.conf" | head -1)" ] || fail "samdad was restarted"
ok "space freed: ingest resumed without a restart, 20 instances indexed"

"$SAMDA" check --data-dir "$D" >"$T/check.out" || fail "data directory check: $(cat "$T/check.out")"
$PY -c "import sqlite3,sys; r=sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0]; sys.exit(r!='ok')" "$D/index.sqlite3" ||
  fail "index integrity_check failed"
ok "data directory consistent, index integrity ok"
kill -TERM "$(cat "$T/d.pid")"; wait_exit "$(cat "$T/d.pid")" 15; [ "$WAIT_RC" = 0 ] || fail "exit $WAIT_RC"
echo "disk-full checks passed"
