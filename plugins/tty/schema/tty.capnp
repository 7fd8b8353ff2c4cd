# spirit tty plugin section (one per process holding a terminal or leading a session
# with one). Grows compatibly only.
@0xc1b98dac913f88ba;

struct Tty {
  fds @0 :List(TtyFd);
  terminals @1 :List(Terminal);   # terminals first described by this process
  cttyOf @2 :UInt32;              # terminal id this process leads the session of (0: none)
  foregroundOf @3 :List(UInt32);  # terminal ids whose foreground group is this process's
}

enum Side {
  master @0;       # /dev/ptmx
  slave @1;        # /dev/pts/N
  controlling @2;  # /dev/tty (the controlling terminal, whatever it is)
}

struct TtyFd {
  fd @0 :Int32;
  terminal @1 :UInt32;            # Terminal.id (tree-wide)
  side @2 :Side;
  desc @3 :UInt32;                # tree-wide: the same id is one open file description
  flags @4 :UInt32;               # open flags (fdinfo), O_CLOEXEC included
  key @5 :Text;                   # the fd's link text (/dev/pts/3, /dev/ptmx, /dev/tty)
}

enum Kind {
  pty @0;                         # master and slave in the tree: recreated as a new pair
  external @1;                    # outside the tree: --shell-job or --inherit-fd
}

struct Termios {
  iflag @0 :UInt32;
  oflag @1 :UInt32;
  cflag @2 :UInt32;
  lflag @3 :UInt32;
  line @4 :UInt8;
  cc @5 :Data;                    # c_cc, 32 bytes (glibc's NCCS)
  ispeed @6 :UInt32;
  ospeed @7 :UInt32;
}

struct Terminal {
  id @0 :UInt32;
  kind @1 :Kind;
  key @2 :Text;                   # slave path at checkpoint (/dev/pts/N): --inherit-fd's KEY
  index @3 :UInt32;               # pty index at checkpoint (the restored pair gets another)
  termios @4 :Termios;            # of the slave
  rows @5 :UInt16;
  cols @6 :UInt16;
  xpixel @7 :UInt16;
  ypixel @8 :UInt16;
  packet @9 :Bool;
  locked @10 :Bool;
  exclusive @11 :Bool;
  toSlave @12 :Data;              # input queued for the slave's reader
  toMaster @13 :Data;             # output queued for the master's reader
  foreground @14 :Bool;           # external: this process's group was the foreground one
  hasTermios @15 :Bool;           # false for a locked pty (its slave cannot be opened)
}
