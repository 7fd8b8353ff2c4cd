# spirit files plugin section (version 2: one common record per descriptor with a
# per-kind payload). Grows compatibly only from here on.
@0xc066325ffbd87374;

struct Files {
  cwd @0 :Text;
  root @1 :Text;
  umask @2 :UInt32;
  fds @3 :List(Fd);
}

# One descriptor: what every kind has, then what its kind carries.
struct Fd {
  fd @0 :Int32;
  flags @1 :UInt32;      # open flags as in /proc/PID/fdinfo (access mode, O_APPEND...)
  cloexec @2 :Bool;
  pos @3 :UInt64;
  # Same open file description as this lower fd (dup, dup2, F_DUPFD): one shared
  # offset and flags; -1 when the fd has its own.
  dupOf @4 :Int32 = -1;
  # Tree-wide identity of this open file description (owner records): records of
  # different processes with the same id are one description, shared across fork.
  descId @5 :UInt64;
  # flock, POSIX and OFD locks held through this description (owner records).
  locks @6 :List(Lock);
  # Records of one description (`dupOf`) repeat the payload without its content.
  kind :union {
    regular @7 :Regular;
    pseudo @8 :Pseudo;
    directory @9 :PathFile;
    charDevice @10 :CharDevice;
    fifo @11 :PathFile;      # a named pipe reopened by path (older images: no data)
    deleted @12 :Deleted;
    memfd @13 :Memfd;
    pipe @14 :Pipe;
    eventfd @15 :Eventfd;
    timerfd @16 :Timerfd;
    signalfd @17 :Signalfd;
    epoll @18 :Epoll;
    inotify @19 :Inotify;
    namedPipe @20 :Fifo;     # a named pipe reopened by path, with its data in flight
    deletedDirectory @23 :PathFile;  # a directory removed while open (path without " (deleted)")
  }
  # F_SETOWN(_EX)/F_SETSIG of the description (owner records); null: none.
  owner @21 :Owner;
  # Lease held through the description (owner records): 0 none, 1 read, 2 write.
  lease @22 :UInt8;
}

# A file reached by path, as it was at checkpoint (st_mode, st_dev, st_ino).
struct PathFile {
  path @0 :Text;
  mode @1 :UInt32;
  dev @2 :UInt64;
  inode @3 :UInt64;
}

struct Regular {
  file @0 :PathFile;
  size @1 :UInt64;
  mtimeNs @2 :Int64;
  # Files up to 1 MiB: xxh3-64 of the content at checkpoint.
  hashed @3 :Bool;
  hash @4 :UInt64;
}

# A regular file on /proc or /sys: reopened by path, never content-checked.
struct Pseudo {
  path @0 :Text;
}

struct CharDevice {
  file @0 :PathFile;
  rdev @1 :UInt64;
}

# A FIFO: data in flight on the first record of it in the tree (dump order).
struct Fifo {
  file @0 :PathFile;
  data @1 :Data;
  capacity @2 :UInt32;
  # Removed while open (path without " (deleted)"): rebuilt once for all its
  # descriptions, from a FIFO made and removed again.
  deleted @3 :Bool;
  # A read-only description that polled POLLHUP (its writers gone after it opened).
  hangup @4 :Bool;
}

# A regular file unlinked while open ("(deleted)" stripped from the path).
struct Deleted {
  file @0 :PathFile;
  data @1 :Data;
  # A sparse file: its size, and where the bytes of `data` go (its data extents, in
  # order); empty: `data` is the whole file.
  size @2 :UInt64;
  extents @3 :List(Extent);
}

struct Extent {
  offset @0 :UInt64;
  len @1 :UInt64;
}

# path: "/memfd:NAME".
struct Memfd {
  file @0 :PathFile;
  data @1 :Data;
  seals @2 :UInt32;
}

# One end of a pipe (which end: the access mode in `flags`); both ends held in the
# tree. Data in flight on the first record of the pipe in dump order.
struct Pipe {
  inode @0 :UInt64;
  capacity @1 :UInt32;
  data @2 :Data;
}

struct Eventfd {
  count @0 :UInt64;
  semaphore @1 :Bool;
}

struct Timerfd {
  clockId @0 :Int32;
  ticks @1 :UInt64;        # expirations not read yet
  valueNs @2 :UInt64;      # remaining until the next expiration (relative)
  intervalNs @3 :UInt64;
}

struct Signalfd {
  sigmask @0 :UInt64;
}

# Rebuilt after every other descriptor (it watches them by number).
struct Epoll {
  targets @0 :List(EpollTarget);
}

struct EpollTarget {
  fd @0 :Int32;
  events @1 :UInt32;
  data @2 :UInt64;
  socket @3 :Bool;  # a socket (the sockets plugin's): added by a remote epoll_ctl once every descriptor is in place
}

struct Inotify {
  watches @0 :List(InotifyWatch);
}

struct InotifyWatch {
  wd @0 :Int32;
  path @1 :Text;
  mask @2 :UInt32;
}

struct Owner {
  kind @0 :Int32;        # F_OWNER_TID 0, F_OWNER_PID 1, F_OWNER_PGRP 2
  id @1 :Int32;
  signal @2 :Int32;      # F_SETSIG; 0: SIGIO
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
