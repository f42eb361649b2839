#!/bin/bash
# A real run of OUR system on the built-in task with the default settings: the coordinator and two
# Node CPU workers on this machine, until --max-steps; prints the coordinator's eval lines and the
# median step time. Usage: bash bench/arith/real-run.sh [max-steps] [eval-every]
set -u
STEPS=${1:-20}
EVERY=${2:-10}
RUN=$(mktemp -d /tmp/arith-real-XXXX)
cd "$(dirname "$0")/../.."
npx tsx coordinator/main.ts --port 0 --host 127.0.0.1 --run-dir "$RUN" --no-resume --max-steps "$STEPS" --eval-every "$EVERY" \
  --checkpoint-every 0 --admin-token bench-admin-token > "$RUN/coord.log" 2>&1 &
COORD=$!
URL=""
for _ in $(seq 1 120); do
  URL=$(grep -o 'COORDINATOR_URL=.*' "$RUN/coord.log" | head -1 | cut -d= -f2)
  [ -n "$URL" ] && break
  sleep 1
done
[ -z "$URL" ] && { echo "coordinator did not start"; cat "$RUN/coord.log"; kill $COORD; exit 1; }
T0=$(date +%s)
npx tsx worker-web/node/main.ts --url "$URL" --backend cpu --name cpu-a --quiet > "$RUN/w1.log" 2>&1 &
W1=$!
npx tsx worker-web/node/main.ts --url "$URL" --backend cpu --name cpu-b --quiet > "$RUN/w2.log" 2>&1 &
W2=$!
while :; do
  S=$(curl -s "$URL/api/status")
  echo "$S" | grep -q '"finished":true' && break
  sleep 5
done
T1=$(date +%s)
curl -s "$URL/api/history" > "$RUN/history.json"
kill $W1 $W2 $COORD 2>/dev/null
wait 2>/dev/null
grep -o '"msg":"[^"]*"' "$RUN/coord.log" | grep -E 'eval at|try it now'
node -e '
const h = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const pts = (Array.isArray(h) ? h : h.history ?? h.points ?? []).filter((p) => typeof p.stepMs === "number");
const ms = pts.map((p) => p.stepMs).sort((a, b) => a - b);
console.log(JSON.stringify({ steps: pts.length, medianStepMs: ms[Math.floor(ms.length / 2)], wallSeconds: Number(process.argv[2]) }));
' "$RUN/history.json" "$((T1 - T0))"
echo "run dir: $RUN"
