#!/usr/bin/env bash
# The UI's front-end libraries: installs the versions pinned in package-lock.json from the
# npm registry and copies the files the pages load into observability/ui/static/ui/vendor/
# (not committed; `make run`, `make test` and the image build run this).
#   scripts/dev/ui_assets.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

vendor=observability/ui/static/ui/vendor
command -v npm >/dev/null 2>&1 || { echo "ui_assets: npm is needed (Node.js 18 or later)" >&2; exit 1; }
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
mkdir -p "${vendor}"
cp node_modules/htmx.org/dist/htmx.min.js "${vendor}/htmx.min.js"
cp node_modules/uplot/dist/uPlot.iife.min.js "${vendor}/uPlot.iife.min.js"
cp node_modules/uplot/dist/uPlot.min.css "${vendor}/uPlot.min.css"
echo "ui_assets: htmx $(node -p 'require("./node_modules/htmx.org/package.json").version')," \
    "uPlot $(node -p 'require("./node_modules/uplot/package.json").version') in ${vendor}"
