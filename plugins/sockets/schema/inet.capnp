# spirit sockets plugin: TCP, UDP (IPv4, IPv6). Placeholder until the inet part lands
# (it replaces this file; `InetRecord` is what schema/sockets.capnp imports).
@0xefe16cfac7dc6321;

struct InetRecord {
  family @0 :UInt16;
  type @1 :UInt16;
  protocol @2 :UInt16;
}
