@0xa8722458ee46dc02;
# Inet sockets of the sockets plugin (TCP, UDP, UDPLite, ICMP ping; IPv4 and IPv6): the
# payload of the `inet` member of sockets.capnp's per-descriptor record. Generic
# SOL_SOCKET options (buffers, SO_LINGER, SO_MARK...) are in that common record, not
# here. Only grows compatibly: new fields at new numbers, none renumbered.

struct InetSocket {
  family @0 :UInt16;       # AF_INET (2) or AF_INET6 (10)
  type @1 :UInt16;         # SOCK_STREAM (1) or SOCK_DGRAM (2)
  protocol @2 :UInt16;     # IPPROTO_TCP 6, UDP 17, UDPLITE 136, ICMP 1, ICMPV6 58
  state @3 :UInt8;         # TCP: the kernel's state (1 ESTABLISHED, 7 CLOSE, 10 LISTEN); 0 otherwise
  local @4 :Addr;          # getsockname; absent when not bound
  peer @5 :Addr;           # getpeername; absent when not connected
  opts @6 :List(Opt);      # IP/IPv6/TCP/UDP-level options that differ from a fresh socket's
  backlog @7 :UInt32;      # LISTEN: the listen(2) backlog in force
  tcp @8 :TcpConn;         # ESTABLISHED: what TCP_REPAIR needs to rebuild the connection
  netlock @9 :Text;        # nft table (family inet) that held this socket's flows at dump; "" none
  rcvDropped @10 :UInt32;  # datagram sockets: bytes of the first queued datagram, dropped (see udp.rs)
  reuseAddr @11 :Bool;     # SO_REUSEADDR as the program set it (TCP repair mode hides and resets it)
  mcast @12 :List(Membership);  # datagram sockets: multicast groups joined (see mcast.rs)
}

struct Membership {
  ifindex @0 :UInt32;
  group @1 :Data;          # 4 or 16 bytes
  exclude @2 :Bool;        # EXCLUDE mode (any source but `sources`), else INCLUDE (only them)
  sources @3 :List(Data);
}

struct Addr {
  ip @0 :Data;             # 4 or 16 bytes, network order
  port @1 :UInt16;
  flowinfo @2 :UInt32;
  scopeId @3 :UInt32;
}

struct Opt {
  level @0 :Int32;         # SOL_IP 0, SOL_TCP 6, SOL_UDP 17, SOL_IPV6 41, SOL_UDPLITE 136, SOL_SOCKET 1
  name @1 :Int32;
  value @2 :Data;          # as getsockopt returned it (an int in host order, or a string)
}

struct TcpConn {
  sndSeq @0 :UInt32;       # write_seq: the sequence number after the last byte of sendQueue
  rcvSeq @1 :UInt32;       # rcv_nxt: the sequence number after the last byte of recvQueue
  sendQueue @2 :Data;      # sent-but-unacknowledged bytes, then not-yet-sent bytes
  unsent @3 :UInt32;       # length of the not-yet-sent tail of sendQueue
  recvQueue @4 :Data;      # received, not read by the program
  mss @5 :UInt32;
  sndWscale @6 :UInt8;
  rcvWscale @7 :UInt8;
  optWscale @8 :Bool;
  optSack @9 :Bool;
  optTimestamps @10 :Bool;
  timestamp @11 :UInt32;   # TCP_TIMESTAMP (the connection's clock)
  sndWl1 @12 :UInt32;      # TCP_REPAIR_WINDOW
  sndWnd @13 :UInt32;
  maxWindow @14 :UInt32;
  rcvWnd @15 :UInt32;
  rcvWup @16 :UInt32;
  finSent @17 :Bool;       # the program had shut down writing (FIN_WAIT1/2): sndSeq and the
                           # queues exclude the FIN, which is sent again after them
  finReceived @18 :Bool;   # the peer's FIN had arrived (CLOSE_WAIT, LAST_ACK, CLOSING): rcvSeq
                           # excludes it; it is replayed at restore (fin.rs)
}
