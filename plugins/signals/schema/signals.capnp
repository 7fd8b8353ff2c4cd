# spirit signals plugin section. Grows compatibly only.
@0x80ad98f5277f96a3;

struct Signals {
  actions @0 :List(Action);         # every signal but SIGKILL and SIGSTOP
  sharedPending @1 :List(Data);     # process-wide queue, raw 128-byte siginfo each
  threads @2 :List(ThreadSignals);  # same order as the process's threads
}

struct Action {
  signo @0 :UInt8;
  handler @1 :UInt64;               # SIG_DFL = 0, SIG_IGN = 1, else an address
  flags @2 :UInt64;
  restorer @3 :UInt64;
  mask @4 :UInt64;
}

struct ThreadSignals {
  tid @0 :Int32;
  blocked @1 :UInt64;
  pending @2 :List(Data);           # the thread's own queue
  altstackSp @3 :UInt64;
  altstackFlags @4 :Int32;
  altstackSize @5 :UInt64;
}
