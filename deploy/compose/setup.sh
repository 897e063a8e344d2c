#!/bin/sh
# One-shot setup of the compose trial (see compose.yaml): a provider, the models Claude Code
# asks for routed to it, a group allowed every model, a service account and an API key.
# Idempotent: "already exists" answers are fine, and the API key is created once and kept on
# the control plane's state volume.
set -eu

tg() { tollgate admin "$@"; }
# Creates that may already exist from an earlier run.
tg_create() { tollgate admin "$@" 2>/tmp/err || grep -qi "already exists" /tmp/err || { cat /tmp/err >&2; exit 1; }; }

if [ -n "${ANTHROPIC_API_KEY:-}" ]; then
  provider=anthropic
  # The data plane reads the key from its own environment; Tollgate stores only the reference.
  tg_create providers create anthropic --kind anthropic --base-url https://api.anthropic.com \
    --api-key-ref env:ANTHROPIC_API_KEY
else
  provider=demo
  tg_create providers create demo --kind demo
fi

for model in claude-opus-4-6 claude-sonnet-4-6 claude-sonnet-4-5 claude-sonnet-4-5-20250929 \
             claude-haiku-4-5 claude-haiku-4-5-20251001; do
  tg models upsert "$model" --max-input-tokens 200000 >/dev/null
  tg routes set "$model" --target "$provider" >/dev/null
done

tg_create groups create trial --models '*'
tg_create service-accounts create --name trial --group trial

key_file=${TOLLGATE_TRIAL_KEY_FILE:-/var/lib/tollgate/trial-api-key}
if [ ! -s "$key_file" ]; then
  tg keys create --principal trial --name trial --format json > /tmp/key.json
  # The secret is printed once; keep it for the next runs of this setup.
  sed -n 's/.*"secret": *"\([^"]*\)".*/\1/p' /tmp/key.json > "$key_file"
  chmod 600 "$key_file"
fi

echo
echo "Tollgate is configured (provider: $provider). Point Claude Code or any Anthropic SDK at it:"
echo
echo "  export ANTHROPIC_BASE_URL=http://127.0.0.1:8080"
echo "  export ANTHROPIC_AUTH_TOKEN=$(cat "$key_file")"
