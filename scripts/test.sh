#!/usr/bin/env bash
# The project's test command: formatting, lints, every test (unit, emulator over HTTP, AWS
# adapters against a real moto server), cfn-lint, policy checks and `sam validate --lint` on the
# SAM template.
#
# It installs what it needs into .venv (moto[server], cfn-lint), starts moto_server on a free
# port of 127.0.0.1, exports MOTO_ENDPOINT for the tests, and stops the server on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION="5.2.5"
CFN_LINT_VERSION="1.58.0"
SAM_VERSION="1.170.0"
VENV="${VENV:-.venv}"
# aws-sam-cli downgrades boto3/botocore/pydantic/click: its own venv, so moto is never affected.
SAM_VENV="${SAM_VENV:-.venv-sam}"

log() { printf '\n== %s\n' "$*" >&2; }

log "python tools ($VENV: moto[server] $MOTO_VERSION, cfn-lint $CFN_LINT_VERSION)"
if ! "$VENV/bin/python" -c "import moto, cfnlint" 2>/dev/null \
   || [ "$("$VENV/bin/python" -c 'import moto; print(moto.__version__)')" != "$MOTO_VERSION" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" "cfn-lint==$CFN_LINT_VERSION"
fi

log "sam cli ($SAM_VENV: aws-sam-cli $SAM_VERSION)"
if [ "$("$SAM_VENV/bin/sam" --version 2>/dev/null)" != "SAM CLI, version $SAM_VERSION" ]; then
  python3 -m venv "$SAM_VENV"
  "$SAM_VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$SAM_VENV/bin/pip" install --quiet --disable-pip-version-check "aws-sam-cli==$SAM_VERSION"
fi

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo build --bins (the function binaries the Lambda tests run)"
cargo build --workspace --bins --locked

log "moto_server"
PORT="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
MOTO_LOG="$(mktemp -t moto.XXXXXX.log)"
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$PORT/moto-api/" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$MOTO_PID" 2>/dev/null; then cat "$MOTO_LOG" >&2; echo "moto_server died" >&2; exit 1; fi
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/moto-api/" >/dev/null || { cat "$MOTO_LOG" >&2; echo "moto_server did not start" >&2; exit 1; }
export MOTO_ENDPOINT="http://127.0.0.1:$PORT"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
echo "moto_server pid $MOTO_PID at $MOTO_ENDPOINT" >&2

log "cargo test"
cargo test --workspace --locked

log "cfn-lint template.yaml"
"$VENV/bin/cfn-lint" template.yaml

log "template policy checks (no IAM wildcards, private TLS-only bucket, encrypted queues, table, topic)"
"$VENV/bin/python" scripts/template-policy.py --self-test
"$VENV/bin/python" scripts/template-policy.py template.yaml

log "sam validate --lint (offline; dummy credentials)"
AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  SAM_CLI_TELEMETRY=0 "$SAM_VENV/bin/sam" validate --lint --template template.yaml

log "all checks passed"
