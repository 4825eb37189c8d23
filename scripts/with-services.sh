#!/usr/bin/env bash
# Run a command with the test services (PostgreSQL, Redis) started when they are available.
# Services are wired in by scripts/services.sh once it exists; without it the command runs as is.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -x "$here/services.sh" ]; then
  exec "$here/services.sh" run "$@"
fi
exec "$@"
