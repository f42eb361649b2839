#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian's chromium for SwiftShader WebGPU,
# python3-torch for the PyTorch cross-checks, redis-server for the multi-coordinator tests), the npm packages, then runs vitest and prints
# a plain "N passed, N failed" line. Exit code is non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
[ -f /usr/lib/chromium/vk_swiftshader_icd.json ] || need_pkgs+=(chromium)
dpkg -s libvulkan1 >/dev/null 2>&1 || need_pkgs+=(libvulkan1)
/usr/bin/python3 -c 'import torch' >/dev/null 2>&1 || need_pkgs+=(python3-torch)
[ -x /usr/bin/redis-server ] || need_pkgs+=(redis-server)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${need_pkgs[*]}; run: sudo apt-get update && sudo apt-get install -y ${need_pkgs[*]}" >&2
    exit 2
  fi
  echo "installing system packages: ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

[ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund
npm run build --silent

export VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json
mkdir -p test-artifacts
set +e
npx vitest run --config tests/vitest.config.ts --reporter=default --reporter=json --outputFile.json=test-artifacts/vitest.json "$@"
rc=$?
set -e
node -e '
const r = JSON.parse(require("fs").readFileSync("test-artifacts/vitest.json", "utf8"));
console.log(`${r.numPassedTests} passed, ${r.numFailedTests + (r.numRuntimeErrorTests ?? 0)} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' || { echo "0 passed, 1 failed"; exit 1; }
exit $rc
