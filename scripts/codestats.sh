#!/usr/bin/env bash
# scripts/codestats.sh reports the code-shape figures of the structure work:
# the longest non-test functions, files over 500 lines, exported identifiers
# per package (scripts/codestats), and every non-test function with a
# cyclomatic complexity over 15 (gocyclo, installed on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null 2>&1 || PATH=$PATH:/usr/local/go/bin
go run ./scripts/codestats "$@"
gocyclo=$(go env GOPATH)/bin/gocyclo
[[ -x $gocyclo ]] || go install github.com/fzipp/gocyclo/cmd/gocyclo@v0.6.0
echo "cyclomatic complexity over 15 (non-test):"
"$gocyclo" -over 15 -ignore '_test\.go$|testdata/' . || true
echo "top 5 by complexity (non-test):"
"$gocyclo" -top 5 -ignore '_test\.go$|testdata/' .
