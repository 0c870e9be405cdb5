#!/usr/bin/env bash
# Prints a copy-paste quickstart for a server about to start at $1.
base="${1:-http://127.0.0.1:8080}"
cat <<TXT

Keybrake is starting on $base. Quickstart (copy-paste into another shell):

  # 1. sign up: the admin token is shown once
  ADMIN=\$(curl -s -X POST $base/v1/tenants -H 'Content-Type: application/json' \\
      -d '{"name":"Acme","email":"ops@acme.test"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["admin_token"])')

  # 2. store your real Stripe secret (encrypted at rest; only a fingerprint comes back)
  curl -s -X PUT $base/v1/vendors/stripe/credentials -H "Authorization: Bearer \$ADMIN" \\
      -H 'Content-Type: application/json' -d '{"secret_key":"sk_test_replace_me_with_yours"}'

  # 3. issue a vault key for an agent: charges only, \$100 a day, \$25 per request
  curl -s -X POST $base/v1/keys -H "Authorization: Bearer \$ADMIN" -H 'Content-Type: application/json' \\
      -d '{"vendor":"stripe","label":"billing-agent","allowed_endpoints":["POST /v1/charges","GET /v1/charges/*"],"daily_usd_cap":100,"max_request_usd":25}'

TXT
