#!/usr/bin/env bash
# nginx -t on the two Nginx configurations as their containers mount them: the app's
# reverse proxy (docker/nginx) and the CONTROL node's monitoring proxy
# (docker/monitoring/nginx), each with the shared nginx.conf, throw-away certificates
# and an empty htpasswd file. Paths under /etc/nginx/ are rewritten to a scratch prefix.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "${scratch}"' EXIT

mkdir -p "${scratch}/certs"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=validate" \
    -keyout "${scratch}/certs/private.key" -out "${scratch}/certs/public.crt" 2>/dev/null

check() {
    local conf_d="$2" prefix="${scratch}/$1"
    mkdir -p "${prefix}/conf.d"
    cp "${root}/${conf_d}"/*.conf "${prefix}/conf.d/"
    cp /etc/nginx/mime.types "${prefix}/mime.types"
    ln -s "${scratch}/certs" "${prefix}/certs"
    touch "${prefix}/prometheus.htpasswd"
    # The APP node's rendered allow line of its metrics port (switch_cluster_mode.py).
    mkdir -p "${prefix}/metrics-allow.d"
    echo "allow 10.0.0.30/32;" > "${prefix}/metrics-allow.d/metrics-allow.conf"
    sed "s|/etc/nginx/|${prefix}/|g" "${root}/docker/nginx/nginx.conf" > "${prefix}/nginx.conf"
    sed -i "s|/etc/nginx/|${prefix}/|g" "${prefix}"/conf.d/*.conf
    nginx -t -q -p "${prefix}" -c "${prefix}/nginx.conf"
    echo "nginx: ${conf_d} with docker/nginx/nginx.conf: syntax ok, configuration test successful"
}

check app docker/nginx/conf.d
check monitoring docker/monitoring/nginx/conf.d
