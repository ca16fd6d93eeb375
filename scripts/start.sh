#!/usr/bin/env bash
# Install pico_nb into .venv and open the dashboard on the embedded default: SQLite under
# ~/.local/share/pico-nb, local runs, the built-in pipeline and a ready demo experiment.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install.sh
# Quiet unless something goes wrong: pip's and setuptools' chatter goes to a log shown on failure.
install_log="$(mktemp)"
if ! install_venv "formats" >"$install_log" 2>&1; then  # formats: HDF5/NWB in and out
  cat "$install_log" >&2
  echo "error: installing into .venv failed (output above)" >&2
  exit 1
fi
rm -f "$install_log"
exec .venv/bin/pico-nb dashboard "$@"
