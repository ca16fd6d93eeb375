#!/usr/bin/env bash
# Install pico_nb with its test dependencies (Python, Debian and services) and run every check.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install.sh
install_venv "test,hub,distributed,nwb,formats"
apt_install chromium redis-server sudo slurm-wlm munge  # sudo: isolation tests; Slurm: one node

# PostgreSQL and Redis are real servers in the tests; start them if they are installed but down,
# and stop here, loudly, if they still do not answer.
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1; then
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  as_root redis-server --bind 127.0.0.1 --port 6379 --save "" --appendonly no --daemonize yes
  sleep 1
fi
pg_isready -q -h 127.0.0.1 || { echo "error: PostgreSQL must answer on 127.0.0.1:5432" >&2; exit 1; }
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null ||
  { echo "error: Redis must answer on 127.0.0.1:6379" >&2; exit 1; }

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports --no-cache  # DESIGN's layers and no import cycles (pyproject.toml)
.venv/bin/mypy  # types of pico_nb/ ([tool.mypy] in pyproject.toml)
set +e
.venv/bin/python -m pytest -p no:cacheprovider --durations=25 "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest ran no test; a filter that selects nothing is a failure, not a pass" >&2
fi
exit "$status"
