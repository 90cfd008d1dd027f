#!/usr/bin/env bash
# HTTP benchmarks (label "bench": prints figures, never gates).
#  1. STOW-RS: N synthetic 512x512 CT instances (default 200), batches of 20 per request, one
#     connection and four, into samdad and into Orthanc's DICOMweb plugin, same files, same run.
#  2. wrk, 10 s, 50 connections: samdad /health, a samdad QIDO study query, and for reference
#     Orthanc's /system and its QIDO study query. Requests/s and latency p50/p99.
# Environment: BENCH_N (instances), BENCH_SECONDS (wrk duration).
. "$SAMDA_SOURCE_DIR/tests/integration/lib.sh"
N=${BENCH_N:-200}; SECS=${BENCH_SECONDS:-10}
command -v wrk >/dev/null || { echo "SKIP: wrk missing"; exit 0; }
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); loopback"
$PY "$SAMDA_SOURCE_DIR/tests/bench/make_ct_series.py" "$T/ct" "$N" 1 >/dev/null
$PY "$SAMDA_SOURCE_DIR/tests/bench/make_ct_series.py" "$T/ct2" "$N" 1 >/dev/null
echo "data: $N CT instances of $(du -sh "$T/ct" | cut -f1) per copy (two copies: one per connection setting)"

dport=$(free_port); hport=$(free_port)
write_conf "$T/s.conf" "$dport" "$hport"
sed -i 's|^\[http\]$|[http]\nthreads = 4|' "$T/s.conf"
start_samdad d "$T/s.conf"
wait_for_text "$T/d.log" 'msg="ready"'
D="$T/data"; H="http://127.0.0.1:$hport"
ingest=$("$SAMDA" token create bench-ingest --role ingest --data-dir "$D" 2>/dev/null)
user=$("$SAMDA" token create bench-user --role user --data-dir "$D" 2>/dev/null)
ohttp=$(free_port); odicom=$(free_port)
start_orthanc o "$ohttp" "$odicom" "$dport" dicomweb
O="http://127.0.0.1:$ohttp"
curl -sf "$O/dicom-web/studies" >/dev/null || fail "Orthanc DICOMweb plugin not answering"

echo
echo "== STOW-RS, $N instances, 20 per request =="
printf '%-34s %s\n' "samdad, 1 connection:" "$($PY "$SAMDA_SOURCE_DIR/tests/bench/stow_bench.py" "$H/dicomweb/studies" "$ingest" "$T/ct" 20 1)"
printf '%-34s %s\n' "Orthanc DICOMweb, 1 connection:" "$($PY "$SAMDA_SOURCE_DIR/tests/bench/stow_bench.py" "$O/dicom-web/studies" - "$T/ct" 20 1)"
printf '%-34s %s\n' "samdad, 4 connections:" "$($PY "$SAMDA_SOURCE_DIR/tests/bench/stow_bench.py" "$H/dicomweb/studies" "$ingest" "$T/ct2" 20 4)"
printf '%-34s %s\n' "Orthanc DICOMweb, 4 connections:" "$($PY "$SAMDA_SOURCE_DIR/tests/bench/stow_bench.py" "$O/dicom-web/studies" - "$T/ct2" 20 4)"

# wrk: requests/s and latency percentiles (wrk prints them with --latency).
wrk_line() { # NAME URL [header]
  local name=$1 url=$2 out; shift 2
  out=$(wrk -t2 -c50 -d"${SECS}s" --latency "$@" "$url" 2>&1)
  local rps p50 p99 non2xx
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  printf '%-40s %10s req/s   p50 %8s   p99 %8s%s\n' "$name" "$rps" "$p50" "$p99" "${non2xx:+   non-2xx: $non2xx}"
}
study=$(curl -s -H "Authorization: Bearer $user" "$H/dicomweb/studies?limit=1" | json_expr 'd[0]["0020000D"]["Value"][0]')
echo
echo "== wrk, ${SECS} s, 50 connections, 2 threads =="
wrk_line "samdad GET /health" "$H/health"
wrk_line "samdad QIDO studies?StudyInstanceUID=" "$H/dicomweb/studies?StudyInstanceUID=$study" -H "Authorization: Bearer $user"
wrk_line "samdad QIDO studies?PatientID=*&limit=10" "$H/dicomweb/studies?PatientID=*&limit=10" -H "Authorization: Bearer $user"
wrk_line "Orthanc GET /system" "$O/system"
wrk_line "Orthanc QIDO studies?StudyInstanceUID=" "$O/dicom-web/studies?StudyInstanceUID=$study"
echo
grep -c '"http request"' "$T/d.log" >/dev/null 2>&1 || true
echo "bench_http: done (figures only; nothing is asserted)"
