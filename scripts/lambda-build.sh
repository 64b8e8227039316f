#!/usr/bin/env bash
# Builds every Lambda function the way `sam build` does (cargo-lambda, release, x86_64 here;
# add --arm64 where the aarch64 standard library is installed) and checks each bootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LAMBDA_VENV:-.venv-lambda}"
if [ ! -x "$VENV/bin/cargo-lambda" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "cargo-lambda==1.9.2"
fi
export PATH="$PWD/$VENV/bin:$PATH"
start=$(date +%s)
cargo lambda build --release --bin lister --bin fetcher --bin subscriptions --bin users-sync "$@"
for f in lister fetcher subscriptions users-sync; do
  b="${CARGO_TARGET_DIR:-target}/lambda/$f/bootstrap"
  [ -x "$b" ] || { echo "missing $b" >&2; exit 1; }
  printf '%-14s %s bytes\n' "$f" "$(stat -c %s "$b")"
done
echo "cargo lambda build --release: $(( $(date +%s) - start )) s"
