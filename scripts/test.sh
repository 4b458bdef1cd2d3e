#!/usr/bin/env bash
# Set up (idempotent), lint, and run the whole test suite. The exit code is pytest's, or
# ruff's when only the lint failed; pytest's 5 ("no tests collected") is a failure too.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1

bash scripts/setup.sh || exit $?

VENV="$REPO/.venv/bin"
LINT_PATHS=()
for p in duplicity_ng backends tests bench; do
    [ -e "$p" ] && LINT_PATHS+=("$p")
done

lint_rc=0
echo "== ruff check ${LINT_PATHS[*]}"
"$VENV/ruff" check --no-cache "${LINT_PATHS[@]}" || lint_rc=1
echo "== ruff format --check ${LINT_PATHS[*]}"
"$VENV/ruff" format --no-cache --check "${LINT_PATHS[@]}" || lint_rc=1

echo "== pytest tests/"
# Per-test timeout well under the 20-minute budget for the whole suite; the slowest tests
# are listed so the budget can be watched.
"$VENV/pytest" -q -p no:cacheprovider --timeout=300 --durations=10 tests/
test_rc=$?
if [ "$test_rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests: failing" >&2
fi

if [ "$test_rc" -ne 0 ]; then
    exit "$test_rc"
fi
if [ "$lint_rc" -ne 0 ]; then
    echo "test.sh: tests passed but ruff found problems" >&2
fi
exit "$lint_rc"
