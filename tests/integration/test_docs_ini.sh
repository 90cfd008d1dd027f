#!/usr/bin/env bash
# Every ```ini example in README.md and docs/*.md is a configuration samdad loads: each block is
# written to a file (the files it names under /etc/samda/ made in a scratch folder: a token, a CA)
# and `samdad --check-config` must accept it. Keeps the documentation's examples true.
. "$(dirname "$0")/lib.sh"
mkdir -p "$T/etc"
echo "example-token" >"$T/etc/vna.token"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/etc/ca.key" -out "$T/etc/vna-ca.pem" -days 2 \
  -subj "/CN=samda docs CA" >/dev/null 2>&1 || fail "test CA"
n=$($PY - "$T" "$SAMDA_SOURCE_DIR" <<'PY'
import glob, os, re, sys
t, src = sys.argv[1], sys.argv[2]
n = 0
for doc in [os.path.join(src, "README.md")] + sorted(glob.glob(os.path.join(src, "docs", "*.md"))):
    text = open(doc).read()
    for m in re.finditer(r"^( *)```ini\n(.*?)^ *```", text, re.S | re.M):
        line = text.count("\n", 0, m.start()) + 1
        body = "\n".join(l[len(m.group(1)):] if l.startswith(m.group(1)) else l for l in m.group(2).split("\n"))
        body = body.replace("/etc/samda/", t + "/etc/")
        n += 1
        with open(os.path.join(t, "doc%02d.conf" % n), "w") as f:
            f.write("# %s:%d\n%s" % (os.path.relpath(doc, src), line, body))
print(n)
PY
)
[ "$n" -ge 3 ] || fail "found only $n ini examples in the documentation"
for f in "$T"/doc*.conf; do
  where=$(head -1 "$f" | cut -c3-)
  out=$("$SAMDAD" --config "$f" --check-config 2>&1) || fail "the example at $where is refused: $out"
done
ok "$n ini examples of the documentation load with samdad --check-config"
