#!/usr/bin/env bash
# Install everything the project needs into ./.venv and ./node_modules, then run
# every check CI runs: lint, format, types, proto lint and breaking changes, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh  # promtool, systemd-analyze for the ops tests

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[dev]'
npm ci --no-audit --no-fund --silent

echo "== dashboard (gateway/web): lint, types, component tests"
(cd gateway/web && npm ci --no-audit --no-fund --silent && npm run lint && npm run typecheck && npm test)

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== buf lint"
node_modules/.bin/buf lint
echo "== buf breaking (against the previous commit)"
if git rev-parse --verify --quiet HEAD~1 >/dev/null; then
  node_modules/.bin/buf breaking --against '.git#ref=HEAD~1'
else
  echo "no previous commit to compare against (shallow or first commit); skipped"
fi
echo "== pytest"
.venv/bin/pytest -q "$@"
if [ $# -eq 0 ]; then
  # The workflow and security suites once more with the coordinator's state in
  # PostgreSQL (a fresh database per test; tests/conftest.py store_under_test), and the
  # optimizer's applied state surviving a restart there.
  echo "== pytest: workflow and security suites on the PostgreSQL store"
  HIVE_TEST_STORE=postgresql .venv/bin/pytest -q tests/test_workflows.py tests/test_security.py \
    tests/test_optimizer_mesh.py
fi
