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
  fifo @3;               # a named pipe reopened by path (data in flight not kept yet)
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
}
