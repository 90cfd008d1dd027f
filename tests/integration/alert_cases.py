#!/usr/bin/env python3
"""Unit tests of deploy/prometheus/samda-alerts.yml for `promtool test rules`: for every alert, input
series that must make it fire (with the labels it must carry) and series that must keep it quiet.
The expected annotations are the rule's own, with {{ $labels.x }} filled in, so the test checks
when each alert fires, not its wording twice. Every alert of the file must have a case here.

usage: alert_cases.py RULES.yml OUT_TEST.yml"""
import re
import sys

import yaml

# alert -> (firing series, eval time, labels the alert carries, quiet series)
CASES = {
    "SamdaDown": (
        ['up{job="samda",instance="pacs1:8080"} 0x10'], "5m", {"job": "samda", "instance": "pacs1:8080"},
        ['up{job="samda",instance="pacs1:8080"} 1x10']),
    "SamdaModelNotLoaded": (
        ["samda_model_loaded 0x10"], "8m", {}, ["samda_model_loaded 1x10"]),
    "SamdaJobStuck": (
        ["samda_jobs_running_stalled_seconds 1000x10"], "8m", {},
        ["samda_jobs_running_stalled_seconds 60x10"]),
    "SamdaQueueNotMoving": (
        ["samda_jobs_oldest_pending_seconds 4000x15", "samda_model_loaded 1x15"], "12m", {},
        ["samda_jobs_oldest_pending_seconds 4000x15", "samda_model_loaded 0x15"]),
    "SamdaJobsFailed": (
        ['samda_jobs{state="failed"} 0 0 1 1 2'], "4m", {"state": "failed"},
        ['samda_jobs{state="failed"} 3x4']),
    "SamdaExportBacklog": (
        ['samda_export_backlog{destination="pacs"} 2x15', 'samda_export_oldest_undelivered_seconds{destination="pacs"} 2000x15'],
        "12m", {"destination": "pacs"},
        ['samda_export_backlog{destination="pacs"} 2x15', 'samda_export_oldest_undelivered_seconds{destination="pacs"} 30x15']),
    "SamdaExportFailed": (
        ['samda_export_failed{destination="archive"} 3x10'], "8m", {"destination": "archive"},
        ['samda_export_failed{destination="archive"} 0x10']),
    "SamdaDiskNearWatermark": (
        ["samda_disk_free_bytes 1100x10", "samda_disk_min_free_bytes 1000x10"], "8m", {},
        ["samda_disk_free_bytes 5000x10", "samda_disk_min_free_bytes 1000x10"]),
    "SamdaDiskBelowWatermark": (
        ["samda_disk_free_bytes 900x10", "samda_disk_min_free_bytes 1000x10"], "5m", {},
        ["samda_disk_free_bytes 1100x10", "samda_disk_min_free_bytes 1000x10"]),
    "SamdaContinualTTAActivated": (
        ["samda_tta_continual_versions_total 0 0 0 1 1 1"], "5m", {},
        ["samda_tta_continual_versions_total 2x10"]),
    "SamdaHTTPErrors": (
        ['samda_http_requests_total{code="2xx",route="/dicomweb/studies"} 0+60x20',
         'samda_http_requests_total{code="5xx",route="/dicomweb/studies"} 0+10x20'], "18m", {},
        ['samda_http_requests_total{code="2xx",route="/dicomweb/studies"} 0+60x20',
         'samda_http_requests_total{code="5xx",route="/dicomweb/studies"} 0+1x20']),
    "SamdaDicomStoreFailures": (
        ["samda_dicom_instances_received_total 0+100x30", "samda_dicom_instances_failed_total 0+20x30"], "25m", {},
        ["samda_dicom_instances_received_total 0+100x30", "samda_dicom_instances_failed_total 0+1x30"]),
}


def series(lines):
    out = []
    for line in lines:
        name, values = line.rsplit(" ", 1) if "}" not in line else (line[:line.index("}") + 1], line[line.index("}") + 2:])
        out.append({"series": name, "values": values})
    return out


def render(text, labels):
    return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), text)


def main(rules_path, out_path):
    rules = {r["alert"]: r for g in yaml.safe_load(open(rules_path))["groups"] for r in g["rules"] if "alert" in r}
    missing = sorted(set(rules) - set(CASES))
    if missing:
        sys.exit("alert_cases.py: alerts without a test case: %s" % ", ".join(missing))
    tests = []
    for name, (fire, at, labels, quiet) in CASES.items():
        rule = rules[name]
        exp_labels = dict(labels, **rule.get("labels", {}))
        exp_ann = {k: render(v, exp_labels) for k, v in rule.get("annotations", {}).items()}
        tests.append({"interval": "1m", "input_series": series(fire), "alert_rule_test": [
            {"eval_time": at, "alertname": name, "exp_alerts": [{"exp_labels": exp_labels, "exp_annotations": exp_ann}]}]})
        tests.append({"interval": "1m", "input_series": series(quiet), "alert_rule_test": [
            {"eval_time": at, "alertname": name, "exp_alerts": []}]})
    doc = {"rule_files": [rules_path], "evaluation_interval": "1m", "tests": tests}
    with open(out_path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    print("%d alerts, %d cases" % (len(rules), len(tests)))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
