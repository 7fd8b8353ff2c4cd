@0xa0399b52f08d162b;

# One POSIX message queue descriptor, as spirit-mqueue checkpoints it.

struct Queue {
  name @0 :Text;          # "/name", as mq_open takes it
  unlinked @1 :Bool;      # the name was gone at checkpoint ("/name (deleted)")
  maxmsg @2 :Int64;
  msgsize @3 :Int64;
  flags @4 :UInt32;       # the descriptor's open flags (access mode, O_NONBLOCK)
  mode @5 :UInt32;        # permission bits of the queue
  uid @6 :UInt32;
  gid @7 :UInt32;
  messages @8 :List(Message);   # in receive order (highest priority first)
}

struct Message {
  priority @0 :UInt32;
  data @1 :Data;
}
