#!/usr/bin/env bash
# Runs compat/smoke.cjs against the given tfjs versions, each in a fresh
# temporary app: @tensorflow/tfjs-core, -layers and -backend-cpu at that
# version plus the packed tfjs-normalization tarball (installed with
# --legacy-peer-deps so npm does not replace the version under test).
# Usage: bash compat/find-floor.sh 4.0.0 4.10.0 ...   (after npm run build)
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
tarball="$(cd "$root" && npm pack --ignore-scripts --pack-destination "$work" --json | node -e 'console.log(JSON.parse(require("fs").readFileSync(0, "utf8"))[0].filename)')"
[ -f "$work/$tarball" ] || { echo "npm pack failed"; exit 1; }
for version in "$@"; do
  app="$work/app-$version"
  mkdir -p "$app" && cd "$app" && npm init -y >/dev/null
  if ! npm install --silent --no-audit --no-fund --legacy-peer-deps \
      "@tensorflow/tfjs-core@$version" "@tensorflow/tfjs-layers@$version" \
      "@tensorflow/tfjs-backend-cpu@$version" "$work/$tarball" >"$app/install.log" 2>&1; then
    echo "$version: install failed ($app/install.log)"; continue
  fi
  cp "$root/compat/smoke.cjs" "$app/"  # resolves tfjs and the package from the app
  if node "$app/smoke.cjs" "$root/test/fixtures/keras" >"$app/smoke.log" 2>&1; then
    echo "$version: $(tail -1 "$app/smoke.log")"
  else
    echo "$version: FAILED: $(grep -m1 -E 'Error|error' "$app/smoke.log")"
  fi
done
rm -rf "$work"
