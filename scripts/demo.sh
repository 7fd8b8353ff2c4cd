#!/usr/bin/env bash
# spirit demo: a counter program is checkpointed, killed, and restored; it carries on
# counting from where it was. Run as root on Debian/Ubuntu: bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "== building spirit (release)"
cargo build --release -q
spirit=target/release/spirit
work=$(mktemp -d /tmp/spirit-demo.XXXXXX)
gcc -O1 -o "$work/counter" tests/progs/counter.c
log="$work/counter.log"

echo "== $spirit check"
$spirit check || true

echo "== starting a counter that appends a number to $log every 100 ms"
# (descriptors this shell inherited beyond 0-2 are closed: the counter holds only its log)
(
  for fd in $(ls /proc/$BASHPID/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done
  exec setsid "$work/counter" "$log" 100 </dev/null >/dev/null 2>&1
) &
pid=$!
sleep 1.5
echo "   pid $pid, last lines: $(tail -n 3 "$log" | tr '\n' ' ')"

echo "== spirit dump $pid -o $work/counter.spirit   (checkpoint, then the process is ended)"
$spirit dump "$pid" -o "$work/counter.spirit"
{ wait "$pid"; } 2>/dev/null || true
before=$(tail -n 1 "$log")
echo "   process $pid is gone: $(kill -0 "$pid" 2>/dev/null && echo 'NO, still there' || echo yes); last number written: $before"
sleep 1
echo "   one second later the log still ends at $(tail -n 1 "$log")"

echo "== spirit show $work/counter.spirit (first lines)"
$spirit show "$work/counter.spirit" | head -n 12

echo "== spirit restore $work/counter.spirit --detach   (same pid $pid)"
newpid=$($spirit restore "$work/counter.spirit" --detach)
sleep 1.5
echo "   restored as pid $newpid; the log continues: $(tail -n 5 "$log" | tr '\n' ' ')"
if awk 'NR-1!=$1{exit 1}' "$log"; then
  echo "   every number from 0 to $(tail -n 1 "$log") appears exactly once, in order: no gap, no repeat."
else
  echo "   DISCONTINUITY in $log" >&2
  kill "$newpid" 2>/dev/null || true
  exit 1
fi
kill "$newpid"
echo "== done (work files in $work)"
