# spirit signals plugin section. Grows compatibly only.
@0x80ad98f5277f96a3;

struct Signals {
  actions @0 :List(Action);         # every signal but SIGKILL and SIGSTOP
  sharedPending @1 :List(Data);     # process-wide queue, raw 128-byte siginfo each
  threads @2 :List(ThreadSignals);  # same order as the process's threads
  itimers @3 :List(Itimer);         # setitimer/alarm: real, virtual, prof (process-wide)
  posixTimers @4 :List(PosixTimer); # timer_create, in id order
}

struct Itimer {
  which @0 :UInt8;                  # ITIMER_REAL 0, ITIMER_VIRTUAL 1, ITIMER_PROF 2
  intervalUs @1 :UInt64;
  valueUs @2 :UInt64;               # remaining at the checkpoint; 0: disarmed
}

struct PosixTimer {
  id @0 :Int32;                     # as the process knows it (kept on restore)
  clock @1 :Int32;                  # clockid_t (CPU clocks encode a pid or tid)
  signo @2 :Int32;
  sival @3 :UInt64;                 # sigev_value
  notify @4 :Int32;                 # sigev_notify (SIGEV_THREAD_ID = 4 is a flag)
  targetTid @5 :Int32;              # SIGEV_THREAD_ID target, as the dump saw it
  intervalNs @6 :UInt64;
  valueNs @7 :UInt64;               # remaining at the checkpoint; 0: disarmed
  overrun @8 :Int32;                # timer_getoverrun at the checkpoint (shown only)
}

struct Action {
  signo @0 :UInt8;
  handler @1 :UInt64;               # SIG_DFL = 0, SIG_IGN = 1, else an address
  flags @2 :UInt64;
  restorer @3 :UInt64;
  mask @4 :UInt64;
}

struct ThreadSignals {
  tid @0 :Int32;                    # as the dump saw it
  blocked @1 :UInt64;
  pending @2 :List(Data);           # the thread's own queue
  altstackSp @3 :UInt64;
  altstackFlags @4 :Int32;
  altstackSize @5 :UInt64;
}
