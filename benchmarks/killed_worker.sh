#!/bin/bash
# What one kill -9 of a hashing worker costs: a cold run (--no-cache, -j 2) whose first worker
# is killed 1.5 s in, against the same run undisturbed. Both must end with exit status 0 and
# the same errors.csv. Results: docs/benchmarks.md ("A killed worker").
#
# usage: benchmarks/killed_worker.sh "MHC COMMAND" INPUT OUTPUT
#   e.g. benchmarks/killed_worker.sh ".venv/bin/python cluster.py" /tmp/corpus-gnome /tmp/killed-out
set -u
M=$1; IN=$2; OUT=$3; rm -rf "$OUT"; rc=$(mktemp)
start=$(date +%s.%N)
(setsid $M -i "$IN" -o "$OUT" --no-cache -j 2 -q > /dev/null 2>&1; echo $? > "$rc") &
sleep 1.5
W=$(pgrep -P "$(pgrep -f "$IN -o $OUT" | head -1)" | head -1); kill -KILL "$W"
while [ ! -s "$rc" ]; do sleep 0.1; done
echo "worker $W killed: $(echo "$(date +%s.%N) - $start" | bc) s, exit $(cat "$rc"), errors.csv rows $(($(wc -l < "$OUT/errors.csv") - 1))"
rm -rf "$OUT" "$rc"; start=$(date +%s.%N)
$M -i "$IN" -o "$OUT" --no-cache -j 2 -q
echo "undisturbed: $(echo "$(date +%s.%N) - $start" | bc) s, exit $?"
rm -rf "$OUT"
