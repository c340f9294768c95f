#!/usr/bin/env bash
# Installs the given Debian packages when they are missing, without starting their
# services (a policy-rc.d forbids it during the install; removed afterwards if this
# script created it) and without creating PostgreSQL's default cluster.
#   scripts/dev/install-debian-packages.sh nginx prometheus     (make validate)
#   scripts/dev/install-debian-packages.sh postgresql-15 pgbackrest   (.ci/run, tests)
set -euo pipefail

missing=()
for package in "$@"; do
    if ! dpkg-query -W -f='${Status}' "${package}" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("${package}")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
    echo "install-debian-packages: ${missing[*]} missing; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
created_policy=false
if [[ ! -e "${policy}" ]]; then
    printf '#!/bin/sh\nexit 101\n' > "${policy}"
    chmod 755 "${policy}"
    created_policy=true
fi
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/apm-no-main-cluster.conf
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
if [[ "${created_policy}" == true ]]; then
    rm -f "${policy}"
fi
echo "install-debian-packages: installed ${missing[*]}"
