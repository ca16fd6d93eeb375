#!/usr/bin/env bash
# Install pico_nb into .venv and run the main job on the embedded default (SQLite, local runs).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install.sh
install_venv ""
exec .venv/bin/pico-nb demo "$@"
