#!/usr/bin/env bash
# promtool on the monitoring configuration: the config with the single-host targets
# (the cluster's rendered targets are checked by scripts/tests), the alert rules, the
# alert rules' unit tests, and the exporters' TLS web config.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "${scratch}"' EXIT

# As the container sees it: /etc/prometheus/{prometheus.yml,alerts.yml,targets/,certs/}.
cp "${root}/docker/monitoring/prometheus.yml" "${root}/docker/monitoring/alerts.yml" "${scratch}/"
cp -r "${root}/docker/monitoring/targets/single" "${scratch}/targets"
mkdir -p "${scratch}/certs"
touch "${scratch}/certs/ca.crt"
promtool check config "${scratch}/prometheus.yml"
promtool check rules "${root}/docker/monitoring/alerts.yml"
(cd "${root}/docker/monitoring" && promtool test rules alerts.test.yml)

# The exporters' web config names container paths; check it with scratch certificates.
mkdir -p "${scratch}/exporter"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=validate" \
    -keyout "${scratch}/exporter/tls.key" -out "${scratch}/exporter/tls.crt" 2>/dev/null
sed "s|/etc/exporter/|${scratch}/exporter/|g" "${root}/docker/monitoring/exporter-web.yml" \
    > "${scratch}/exporter/web.yml"
promtool check web-config "${scratch}/exporter/web.yml"
