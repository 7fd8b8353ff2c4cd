# spirit files plugin section. Grows compatibly only.
@0xc066325ffbd87374;

struct Files {
  cwd @0 :Text;
  root @1 :Text;
  umask @2 :UInt32;
  fds @3 :List(Fd);
}

enum FdKind {
  regular @0;
  charDevice @1;
  directory @2;
  fifo @3;          # a named pipe reopened by path (data in flight not kept yet)
  pipe @4;          # one end of a pipe (`objectId`: its inode); both ends held in the tree
  deletedFile @5;   # a regular file unlinked while open: content in `data`
  memfd @6;         # name in `path` ("/memfd:NAME (deleted)"), content in `data`, `seals`
  eventfd @7;       # `counter`, `semaphore`
  timerfd @8;       # `clockId`, `counter` (ticks), `valueNs`/`intervalNs` (remaining, relative)
  signalfd @9;      # `sigmask`
  epoll @10;         # `epoll` targets, rebuilt after every other descriptor
  inotify @11;      # `inotify` watches
}

struct Fd {
  fd @0 :Int32;
  kind @1 :FdKind;
  path @2 :Text;
  flags @3 :UInt32;      # open flags as in /proc/PID/fdinfo (access mode, O_APPEND...)
  cloexec @4 :Bool;
  pos @5 :UInt64;
  rdev @6 :UInt64;       # character devices: device number
  mode @7 :UInt32;       # st_mode
  size @8 :UInt64;
  mtimeNs @9 :Int64;
  dev @10 :UInt64;
  inode @11 :UInt64;
  # Same open file description as this lower fd (dup, dup2, F_DUPFD): one shared
  # offset and flags; -1 when the fd has its own.
  dupOf @12 :Int32 = -1;
  # Pipes, deleted files, memfds: fds with the same object id are the same file (the
  # two ends of one pipe, two opens of one memfd). Pipes: the pipe's inode.
  objectId @13 :UInt64;
  # Pipe data in flight (on the first fd of the pipe), deleted file or memfd content.
  data @14 :Data;
  pipeSize @15 :UInt32;
  seals @16 :UInt32;
  counter @17 :UInt64;
  semaphore @18 :Bool;
  clockId @19 :Int32;
  valueNs @20 :UInt64;
  intervalNs @21 :UInt64;
  sigmask @22 :UInt64;
  epoll @23 :List(EpollTarget);
  inotify @24 :List(InotifyWatch);
  locks @25 :List(Lock);
  # Regular files up to 1 MiB: xxh3-64 of the content at checkpoint.
  hashed @26 :Bool;
  hash @27 :UInt64;
  # Tree-wide identity of this open file description (owner records): records of
  # different processes with the same id are one description, shared across fork (one
  # offset, one set of status flags). 0: unknown (images before trees shared them).
  descId @28 :UInt64;
}

struct EpollTarget {
  fd @0 :Int32;
  events @1 :UInt32;
  data @2 :UInt64;
}

struct InotifyWatch {
  wd @0 :Int32;
  path @1 :Text;
  mask @2 :UInt32;
}

enum LockKind {
  flock @0;
  posix @1;
  ofd @2;
}

struct Lock {
  kind @0 :LockKind;
  write @1 :Bool;
  start @2 :UInt64;
  len @3 :UInt64;        # 0: to the end of the file
}
