#!/usr/bin/env bash
# Tries the package as a new user would: packs it, installs the tarball with
# @tensorflow/tfjs@VERSION into an empty app and runs the README's Node example
# from CommonJS and from an ES module.
# Usage (after npm run build): bash compat/try-as-user.sh 4.22.0 4.6.0 4.5.0
# With a tfjs older than the peer range (e.g. 4.5.0) npm refuses the install
# (ERESOLVE, peer conflict); the script reports it and exits non-zero.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
tarball="$work/$(cd "$root" && npm pack --ignore-scripts --pack-destination "$work" --json \
  | node -e 'console.log(JSON.parse(require("fs").readFileSync(0, "utf8"))[0].filename)')"
# The README's Node example (README.md, "Install and use"), as ES module and as CommonJS.
esm="$(node -e '
  const md = require("fs").readFileSync(process.argv[1], "utf8");
  const block = md.split("## Install and use")[1].match(/```ts\n([^`]*tfjs-normalization\/node[^`]*)```/)[1];
  process.stdout.write(block);' "$root/README.md")"
cjs="$(printf '%s\n' "$esm" | sed -E "s/^import \* as (\w+) from '([^']+)';/const \1 = require('\2');/; s/^import \{([^}]*)\} from '([^']+)';/const {\1} = require('\2');/")"
failed=0
for version in "$@"; do
  app="$work/app-$version"; mkdir -p "$app" && cd "$app" && npm init -y >/dev/null
  npm install --silent --no-audit --no-fund "@tensorflow/tfjs@$version" "$tarball" >install.log 2>&1 \
    || { echo "$version: npm install failed ($app/install.log)"; failed=1; continue; }
  printf '%s\n' "$esm" > example.mjs
  printf '(async () => {\n%s\n})().catch((e) => { console.error(e.message); process.exit(1); });\n' "$cjs" > example.cjs
  for file in example.cjs example.mjs; do
    if out="$(node "$file" 2>&1)"; then
      echo "$version $file: $(printf '%s' "$out" | tail -1)"
    else
      echo "$version $file: FAILED: $(printf '%s' "$out" | grep -m1 -E 'tfjs-normalization|Error')"; failed=1
    fi
  done
  echo "$version npm ls: $(npm ls @tensorflow/tfjs-core --all --parseable 2>/dev/null | sed "s|$app/||" | tr '\n' ' ')"
done
rm -rf "$work"
exit $failed
