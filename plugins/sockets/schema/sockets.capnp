# spirit sockets plugin section: one record per socket descriptor of a process.
# Grows compatibly only.
@0xc5d449fc0f649cd6;

using Inet = import "inet.capnp";

struct Sockets {
  sockets @0 :List(Socket);
  # Sockets no process holds, only in flight (SCM_RIGHTS) in a queue of one of this
  # process's sockets (`fd` is -1): made again and sent along at restore.
  inflight @1 :List(Socket);
}

struct Socket {
  fd @0 :Int32;
  flags @1 :UInt32;       # file status flags as in fdinfo (O_NONBLOCK, O_ASYNC...)
  cloexec @2 :Bool;
  inode @3 :UInt64;       # the socket's inode: the same in every process holding it
  # Another fd of this process naming the same socket (one open file description:
  # a socket has exactly one); the payload is then `dup`.
  dupOf @4 :Int32 = -1;
  opts @5 :Options;
  union {
    dup @6 :Void;
    unix @7 :Unix;
    inet @8 :Inet.InetSocket;
    netlink @9 :Netlink;
    packet @10 :Packet;   # never written today: packet sockets are refused
  }
}

# Generic SOL_SOCKET options, the same for every family (opts.rs).
struct Options {
  reuseAddr @0 :Bool;
  reusePort @1 :Bool;
  keepAlive @2 :Bool;
  sndBuf @3 :UInt32;      # the user's value: half what the kernel reports
  rcvBuf @4 :UInt32;
  lingerOn @5 :Bool;
  lingerSecs @6 :Int32;
  priority @7 :Int32;
  mark @8 :UInt32;
  bindToDevice @9 :Text;
  passCred @10 :Bool;
  passSec @11 :Bool;
  rcvLowat @12 :Int32;
  rcvTimeoUs @13 :Int64;
  sndTimeoUs @14 :Int64;
  filter @15 :Data;       # classic BPF (SO_GET_FILTER): 8 bytes per instruction
  filterLocked @16 :Bool;
  peekOff @17 :Int32 = -1;
  broadcast @18 :Bool;
  oobInline @19 :Bool;
  timestamp @20 :Bool;
}

enum PeerKind {
  none @0;        # not connected
  inTree @1;      # the peer is a socket of the tree (`peer`), or an embryo queued
                  # on a listener of the tree (the client side of it)
  reconnect @2;   # outside the tree: connect to `peerName` again at restore
  inherit @3;     # outside the tree: the restorer is given it (--inherit-fd)
}

struct Unix {
  type @0 :UInt8;         # SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_SEQPACKET 5
  state @1 :UInt8;        # TCP_ESTABLISHED 1, TCP_CLOSE 7, TCP_LISTEN 10
  name @2 :Data;          # as bound: a path, or a leading NUL for an abstract name
  # An accepted socket showing its listener's name (not bound itself).
  nameInherited @3 :Bool;
  file @4 :SockFile;      # a path name: the socket file and the path to bind again
  peer @5 :UInt64;        # the peer's inode (0: none)
  peerName @6 :Data;
  peerKind @7 :PeerKind;
  backlog @8 :UInt32;     # listeners
  pending @9 :List(UInt64);  # listeners: the clients of connections not yet accepted
  shutdown @10 :UInt8;    # 1: receive side shut, 2: send side shut
  queue @11 :List(Message);  # what this socket has to read, in order
  embryo @12 :Bool;       # connected to an embryo (not yet accepted) of `listener`
  listener @13 :UInt64;
}

struct SockFile {
  present @0 :Bool;       # the file was at its path at checkpoint
  path @1 :Text;          # absolute (resolved from the process's cwd for a relative name)
  base @2 :Text;          # relative names: the directory they were relative to
  mode @3 :UInt32;
  uid @4 :UInt32;
  gid @5 :UInt32;
}

struct Message {
  data @0 :Data;
  files @1 :List(InFlight);  # SCM_RIGHTS carried with it
  from @2 :Data;             # datagrams: the sender's name
}

struct InFlight {
  path @0 :Text;          # regular files, directories, devices: reopened by path
  flags @1 :UInt32;
  pos @2 :UInt64;
  socket @3 :UInt64;      # a unix socket (its inode): held in the tree or in `inflight`
}

struct Netlink {
  protocol @0 :Int32;
  type @1 :UInt8;
  portid @2 :UInt32;
  groups @3 :List(UInt32);   # every group joined (bit numbers from 1)
  dstPortid @4 :UInt32;
  dstGroup @5 :UInt32;
}

struct Packet {
  protocol @0 :UInt16;
  ifindex @1 :Int32;
}
