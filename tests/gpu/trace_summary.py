#!/usr/bin/env python3
"""Summarise a Kineto Chrome trace (bench_model --trace F): CUDA kernel time by kernel and by the
aten operator that launched it, and how busy the GPU was over the traced span.
Usage: tests/gpu/trace_summary.py TRACE.json [--top N]"""
import collections
import json
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 30
    with open(sys.argv[1]) as f:
        events = json.load(f).get("traceEvents", [])
    kernels = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    ops = {}
    for e in events:
        if e.get("ph") == "X" and e.get("cat") == "cpu_op":
            ext = (e.get("args") or {}).get("External id")
            if ext is not None:
                ops[ext] = e.get("name", "?")
    if not kernels:
        print("no CUDA kernels in the trace")
        return
    busy = sum(k.get("dur", 0) for k in kernels)
    span = max(k["ts"] + k.get("dur", 0) for k in kernels) - min(k["ts"] for k in kernels)
    print(f"kernels {len(kernels)}, GPU busy {busy / 1000:.2f} ms over a span of {span / 1000:.2f} ms "
          f"({100.0 * busy / max(span, 1):.0f}%)")
    by_name = collections.defaultdict(lambda: [0, 0.0])
    by_op = collections.defaultdict(lambda: [0, 0.0])
    for k in kernels:
        name = k.get("name", "?")
        by_name[name[:110]][0] += 1
        by_name[name[:110]][1] += k.get("dur", 0)
        op = ops.get((k.get("args") or {}).get("External id"), "(" + k.get("cat") + ")")
        by_op[op][0] += 1
        by_op[op][1] += k.get("dur", 0)
    for title, table in (("by operator", by_op), ("by kernel", by_name)):
        print(f"--- {title}: count, ms, share")
        for name, (n, us) in sorted(table.items(), key=lambda kv: -kv[1][1])[:top]:
            print(f"{n:6d} {us / 1000:9.3f} {100.0 * us / busy:5.1f}%  {name}")


if __name__ == "__main__":
    main()
