#!/usr/bin/env bash
# Install pico_nb into .venv and open the dashboard on the embedded default: SQLite under
# ~/.local/share/pico-nb, local runs, the built-in pipeline and a ready demo experiment.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install.sh
install_venv ""
exec .venv/bin/pico-nb dashboard "$@"
