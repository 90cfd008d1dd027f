#!/usr/bin/env bash
# systemd/samdad.service must pass `systemd-analyze verify` with no warning at all (the tool exits 0
# even on unknown keys, so its output is what is checked).
. "$(dirname "$0")/lib.sh"
command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (deploy/install-deps.sh installs systemd)"
# verify needs ExecStart's binary to exist: point it at the one just built.
sed "s#/usr/bin/samdad#$SAMDAD#" "$SAMDA_SOURCE_DIR/systemd/samdad.service" >"$T/samdad.service"
out=$(systemd-analyze verify "$T/samdad.service" 2>&1) || fail "systemd-analyze verify failed: $out"
[ -z "$out" ] || fail "systemd-analyze verify warns: $out"
for k in Type=notify WatchdogSec= NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes User=samda ReadWritePaths=/var/lib/samda; do
  grep -q "^$k" "$T/samdad.service" || fail "unit lacks $k"
done
ok "samdad.service verifies cleanly and carries the required hardening"
grep -q '^u samda ' "$SAMDA_SOURCE_DIR/systemd/samda.sysusers.conf" || fail "sysusers snippet lacks the samda user"
grep -q '^d /var/lib/samda 0700 samda samda' "$SAMDA_SOURCE_DIR/systemd/samda.tmpfiles.conf" || fail "tmpfiles snippet wrong"
ok "sysusers and tmpfiles snippets present"
