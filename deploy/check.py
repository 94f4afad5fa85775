#!/usr/bin/env python3
"""Checks every deployment file of switchyard, for the test suite.

- YAML everywhere under deploy/ and k8s/ lints clean (yamllint).
- deploy/Dockerfile lints clean (hadolint).
- deploy/compose.yaml loads, and every file a service mounts or builds from
  exists; haproxy and Prometheus name only services that exist.
- Every Kubernetes manifest validates against the Kubernetes schemas
  (kubernetes-validate, strict); custom resources (ServiceMonitor,
  PrometheusRule) are checked for shape only, as their CRDs are not in those
  schemas, as rendered by `kubectl kustomize` for the base and every
  overlay (so patches and components are checked as they apply).
- The alert rules are the same in deploy/prometheus and k8s/base.
- Every metric the dashboard and the alerts query is one switchyard exports
  (docs/metrics.md).

Prints what it checked; exits 1 on the first kind of failure it finds.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
KUBERNETES_VERSION = "1.30.0"
failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def yaml_files():
    return sorted(p for d in ("deploy", "k8s") for p in (ROOT / d).rglob("*") if p.suffix in (".yml", ".yaml"))


def lint_yaml():
    config = "{extends: default, rules: {line-length: {max: 140}, document-start: disable, truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}}}"
    files = [str(p) for p in yaml_files()]
    result = subprocess.run([BIN / "yamllint", "-s", "-d", config, *files], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"yamllint:\n{result.stdout}{result.stderr}")
    print(f"yamllint: {len(files)} files")


def lint_dockerfile():
    result = subprocess.run([BIN / "hadolint", str(ROOT / "deploy/Dockerfile")], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"hadolint:\n{result.stdout}{result.stderr}")
    print("hadolint: deploy/Dockerfile")


def check_compose():
    path = ROOT / "deploy/compose.yaml"
    compose = yaml.safe_load(path.read_text())
    services = compose["services"]
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = (path.parent / build["context"]).resolve()
            if not (context / build["dockerfile"]).is_file():
                fail(f"compose: {name} builds from a missing {build['dockerfile']}")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(".") and not (path.parent / source).exists():
                fail(f"compose: {name} mounts a missing {source}")
    haproxy = (ROOT / "deploy/haproxy/haproxy.cfg").read_text()
    for server in re.findall(r"^\s*server \S+ ([\w-]+):\d+", haproxy, re.M):
        if server not in services:
            fail(f"haproxy.cfg names {server}, not a compose service")
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    for job in prometheus["scrape_configs"]:
        for target in (t for c in job["static_configs"] for t in c["targets"]):
            if target.split(":")[0] not in services:
                fail(f"prometheus.yml scrapes {target}, not a compose service")
    print(f"compose: {len(services)} services")


def kustomizations():
    """The directories kubectl renders: the base and every overlay."""
    roots = [ROOT / "k8s" / "base"]
    roots += sorted(p.parent for p in (ROOT / "k8s" / "overlays").glob("*/kustomization.yaml"))
    return roots


def check_document(where, document):
    kind = document.get("kind")
    if kind in CUSTOM_KINDS:
        if document.get("apiVersion") != "monitoring.coreos.com/v1" or "spec" not in document:
            fail(f"{where}: {kind} is not a monitoring.coreos.com/v1 resource")
        return
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        fail(f"{where}: {kind} {document.get('metadata', {}).get('name')}: {e.message}")


def check_kubernetes():
    """Renders the base and each overlay with `kubectl kustomize` and validates
    what it renders: patches and components are checked as they apply."""
    manifests = 0
    for root in kustomizations():
        where = root.relative_to(ROOT)
        try:
            rendered = subprocess.run(
                ["kubectl", "kustomize", str(root)], capture_output=True, text=True, check=False
            )
        except FileNotFoundError:
            fail("kubectl is needed to render the kustomizations (kubectl kustomize)")
            return
        if rendered.returncode != 0:
            fail(f"{where}: kubectl kustomize failed: {rendered.stderr.strip()}")
            continue
        documents = [d for d in yaml.safe_load_all(rendered.stdout) if d]
        if not documents:
            fail(f"{where}: renders nothing")
        for document in documents:
            manifests += 1
            check_document(where, document)
    print(f"kubernetes: {manifests} rendered manifests of {len(kustomizations())} kustomizations against {KUBERNETES_VERSION}")


def exported_metrics():
    text = (ROOT / "docs/metrics.md").read_text()
    return set(re.findall(r"^\| `(switchyard_[a-z_]+)`", text, re.M))


def queried_metrics(expr):
    return set(re.findall(r"\b(switchyard_[a-z_]+?)(?:_bucket|_sum|_count)?\b(?=[\s{\[)]|$)", expr))


def check_queries():
    exported = exported_metrics()
    dashboard = json.loads((ROOT / "deploy/grafana/switchyard.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    rule = yaml.safe_load((ROOT / "k8s/base/prometheusrule.yaml").read_text())
    if rule["spec"]["groups"] != alerts["groups"]:
        fail("k8s/base/prometheusrule.yaml and deploy/prometheus/alerts.yml differ")
    expressions += [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    for expr in expressions:
        for metric in queried_metrics(expr):
            if metric not in exported:
                fail(f"a query uses {metric}, which switchyard does not export: {expr}")
    print(f"queries: {len(expressions)} use only exported metrics ({len(exported)} documented)")


for check in (lint_yaml, lint_dockerfile, check_compose, check_kubernetes, check_queries):
    check()
if failures:
    print(f"{len(failures)} problem(s)")
    sys.exit(1)
print("deploy: all checks passed")
