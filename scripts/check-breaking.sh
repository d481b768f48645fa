#!/usr/bin/env bash
# Fails if the proto in the work tree breaks compatibility with ANY committed version of
# it (buf breaking, FILE rules). That includes main's last landed version, and needs no
# knowledge of which commit that was: a v1 contract may only grow. A deliberate break
# belongs in a new package version (totpd.v2), never in an edit of v1.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=${BUF:-.venv/bin/buf}
if [ "$(git rev-parse --is-shallow-repository 2>/dev/null)" = "true" ]; then
  echo "check-breaking: shallow clone, comparing with the history that is here" >&2
fi
versions=$(git log --format=%H -- protos/ 2>/dev/null || true)
count=0
for sha in $versions; do
  "$BUF" breaking protos --against ".git#ref=${sha},subdir=protos"
  count=$((count + 1))
done
echo "buf breaking: no break against ${count} committed version(s) of protos/"
