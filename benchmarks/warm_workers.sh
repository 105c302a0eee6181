#!/bin/bash
# Cold runs (--no-cache, default algorithms) with -j 2 and -j 8 of two mhc commands,
# alternated five times; prints each command's times per -j. Results: docs/benchmarks.md
# ("Workers inherit what hashing imports").
#
# usage: benchmarks/warm_workers.sh "BEFORE COMMAND" "AFTER COMMAND" INPUT
#   e.g. git worktree add /tmp/mhc-before 2b4e1f0~1
#        benchmarks/warm_workers.sh ".venv/bin/python /tmp/mhc-before/cluster.py" ".venv/bin/python cluster.py" /tmp/corpus40
set -u
B=$1; A=$2; IN=$3; OUT=$(mktemp -d)/out
for i in 1 2 3 4 5; do
  for which in before after; do
    M=$B; [ $which = after ] && M=$A
    for j in 2 8; do
      /usr/bin/time -f "$which -j $j: %e" $M -i "$IN" -o "$OUT" --no-cache -j $j -q
    done
  done
done 2>&1 | awk '{k=$1" "$2" "$3; a[k]=a[k]" "$4} END {for (k in a) print k, a[k]}' | sort
rm -rf "$(dirname "$OUT")"
