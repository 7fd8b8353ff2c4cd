#!/bin/bash
# Kill `spirit dump PID --leave-running` with SIGKILL (or $SIG) at random moments and
# count how often the checkpointed process survives and keeps counting correctly.
# Usage: scripts/kill-dump.sh SPIRIT_BINARY [TRIES] [MAX_DELAY_MS] [MIN_DELAY_MS]
# With AT=regs|entry|exit, try i instead makes spirit SIGKILL itself at that point of its
# i-th injected syscall (SPIRIT_FAULT, see kmod/src/fault.rs), i = 1..TRIES.
# Needs root and gcc. Touches only the processes it starts.
set -u
SPIRIT=${1:?spirit binary}; TRIES=${2:-20}; MAX=${3:-40}; MIN=${4:-0}; SIG=${SIG:-KILL}
dir=$(mktemp -d /tmp/spirit-killdump.XXXXXX)
trap 'rm -rf "$dir"' EXIT
gcc -O2 -o "$dir/counter" "$(dirname "$0")/../tests/progs/counter.c" || exit 1
lost=0 stopped=0 gap=0
for i in $(seq 1 "$TRIES"); do
    log="$dir/log.$i"
    # Only 0-2 open (a descriptor inherited from the caller could make spirit refuse).
    (for f in /proc/$BASHPID/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done
     exec "$dir/counter" "$log" 2) </dev/null >/dev/null 2>&1 &
    cpid=$!
    sleep 0.05
    delay=$(( MIN + RANDOM % (MAX - MIN + 1) ))
    if [ -n "${AT:-}" ]; then
        SPIRIT_FAULT="die:$i:$AT${BARE:+:bare}" "$SPIRIT" dump "$cpid" -o "$dir/img.$i" --leave-running </dev/null >/dev/null 2>&1
        delay="call $i at $AT, "
    else
        "$SPIRIT" dump "$cpid" -o "$dir/img.$i" --leave-running </dev/null >/dev/null 2>&1 &
        spid=$!
        sleep "$(printf '0.%03d' "$delay")"
        kill -"$SIG" "$spid" 2>/dev/null
        wait "$spid" 2>/dev/null
    fi
    sleep 0.1
    n1=$(wc -l < "$log")
    sleep 0.2
    n2=$(wc -l < "$log")
    state=$(awk '{print $3}' "/proc/$cpid/stat" 2>/dev/null)
    tracer=$(awk '/TracerPid/{print $2}' "/proc/$cpid/status" 2>/dev/null)
    blocked=$(awk '/SigBlk/{print $2}' "/proc/$cpid/status" 2>/dev/null)
    verdict=ok
    if ! kill -0 "$cpid" 2>/dev/null || [ "$state" = Z ]; then verdict=DEAD; lost=$((lost+1))
    elif [ "$n2" -le "$n1" ] || [ "${tracer:-0}" != 0 ] || [ "$blocked" != 0000000000000000 ]; then
        verdict="STUCK(state=$state tracer=$tracer blocked=$blocked)"; stopped=$((stopped+1))
    elif ! awk 'NR-1!=$1{bad=1} END{exit bad}' "$log"; then verdict=GAP; gap=$((gap+1))
    fi
    kill -KILL "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null; st=$?
    [ "$verdict" = DEAD ] && verdict="DEAD(wait status $st)"
    echo "try $i: killed after ${delay} ms: $verdict"
    rm -f "$dir"/img.* "$dir"/.spirit-* 2>/dev/null
done
echo "SUMMARY: $TRIES kills at ${MIN}-${MAX} ms (SIG$SIG): $lost dead, $stopped stuck, $gap wrong sequence, $((TRIES-lost-stopped-gap)) fine"
