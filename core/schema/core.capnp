# spirit image: the core schema (header, per-process core state, page blocks, trailer).
# Grows compatibly only: new fields get new numbers, nothing is renumbered or removed.
@0xc2c1875a3e6aa430;

struct Header {
  toolVersion @0 :Text;
  arch @1 :Text;
  kernel @2 :Text;
  hostname @3 :Text;
  timeNs @4 :UInt64;          # wall clock at checkpoint, ns since the epoch
  cpu @5 :Cpu;
  plugins @6 :List(PluginInfo);
  tree @7 :List(TreeNode);    # the shape of the checkpointed tree, root first
}

struct Cpu {
  vendor @0 :Text;
  modelName @1 :Text;
  xfeatures @2 :UInt64;       # XCR0 at checkpoint
  xsaveSize @3 :UInt32;       # standard-format XSAVE area size
  components @4 :List(XComponent);
  flags @5 :List(Text);       # ISA flags the process may have used
}

struct XComponent {
  index @0 :UInt8;
  offset @1 :UInt32;
  size @2 :UInt32;
}

struct PluginInfo {
  name @0 :Text;
  version @1 :UInt32;
}

struct TreeNode {
  pid @0 :Int32;
  ppid @1 :Int32;
  threads @2 :List(Int32);
  pgid @3 :Int32;
  sid @4 :Int32;
  zombie @5 :Bool;            # dead, not yet reaped by its parent: no Process record
  exitStatus @6 :Int32;       # a zombie's wait status
}

struct Process {
  pid @0 :Int32;
  ppid @1 :Int32;
  pgid @2 :Int32;
  sid @3 :Int32;
  uid @4 :UInt32;
  gid @5 :UInt32;
  comm @6 :Text;
  exe @7 :Text;
  personality @8 :UInt32;
  rlimits @9 :List(Rlimit);
  mm @10 :MmState;
  auxv @11 :List(UInt64);
  vmas @12 :List(Vma);
  threads @13 :List(Thread);
  sections @14 :List(Section);  # one per plugin that had something to say
  creds @15 :Creds;
  files @16 :List(FileId);      # the executable and every mapped file, for identity checks
  pdeathsig @17 :Int32;         # PR_GET_PDEATHSIG
  fdEnd @18 :Int32;             # one past the highest descriptor number the process had
  attrs @19 :ProcAttrs;         # scheduler, prctl and /proc attributes (procattrs.rs)
  mapped @20 :List(MappedObject); # files deleted while mapped, with their content (mapped.rs)
  security @21 :List(ThreadSecurity);  # per thread, in `threads` order; empty: not recorded
  embedded @22 :List(EmbeddedFile);  # `dump --embed-files`: needed files' content, each once per image
}

struct EmbeddedFile {
  hash @0 :Text;                # BLAKE3 of the content, hex (FileId.hash)
  size @1 :UInt64;              # uncompressed
  zstd @2 :Data;                # the content, zstd-compressed
}

struct MappedObject {
  dev @0 :Text;                 # as /proc/PID/maps shows it (MAJ:MIN)
  inode @1 :UInt64;
  path @2 :Text;                # without " (deleted)"
  data @3 :Data;
}

struct ProcAttrs {
  threads @0 :List(ThreadAttrs);  # in the order of the process's threads
  childSubreaper @1 :Bool;
  thpDisable @2 :Bool;
  ioprio @3 :UInt32;
  oomScoreAdj @4 :Int32;
  stopped @5 :Bool;               # stopped by a signal (job control) at checkpoint
}

struct ThreadAttrs {
  nice @0 :Int32;
  policy @1 :UInt32;
  rtPriority @2 :UInt32;
  affinity @3 :List(UInt64);      # CPU mask, 64 CPUs per word
  timerSlackNs @4 :UInt64;
}

# A thread's capabilities, securebits, no_new_privs, seccomp and syscall user dispatch.
struct ThreadSecurity {
  capInheritable @0 :UInt64;
  capPermitted @1 :UInt64;
  capEffective @2 :UInt64;
  capBounding @3 :UInt64;
  capAmbient @4 :UInt64;
  securebits @5 :UInt32;        # PR_GET_SECUREBITS
  noNewPrivs @6 :Bool;
  seccompMode @7 :UInt8;        # 0 off, 1 strict, 2 filter
  filters @8 :List(SeccompFilter);  # index 0 is the oldest (installed first)
  sudMode @9 :UInt64;           # syscall user dispatch: 0 off
  sudSelector @10 :UInt64;
  sudOffset @11 :UInt64;
  sudLen @12 :UInt64;
}

struct SeccompFilter {
  flags @0 :UInt64;             # SECCOMP_FILTER_FLAG_* it was installed with
  program @1 :Data;             # struct sock_filter[], 8 bytes per instruction
}

struct Creds {
  uids @0 :List(UInt32);        # real, effective, saved, filesystem
  gids @1 :List(UInt32);
  groups @2 :List(UInt32);      # supplementary
  dumpable @3 :UInt8;           # PR_GET_DUMPABLE
}

struct FileId {
  path @0 :Text;
  size @1 :UInt64;
  mtimeNs @2 :Int64;
  dev @3 :UInt64;
  inode @4 :UInt64;
  mode @5 :UInt32;
  uid @6 :UInt32;
  gid @7 :UInt32;
  buildId @8 :Text;              # ELF build-id, hex; empty: none
  hash @9 :Text;                 # BLAKE3 of the content, hex; empty: not hashed
}

struct Rlimit {
  resource @0 :UInt32;
  cur @1 :UInt64;
  max @2 :UInt64;
}

struct MmState {
  startCode @0 :UInt64;
  endCode @1 :UInt64;
  startData @2 :UInt64;
  endData @3 :UInt64;
  startBrk @4 :UInt64;
  brk @5 :UInt64;
  startStack @6 :UInt64;
  argStart @7 :UInt64;
  argEnd @8 :UInt64;
  envStart @9 :UInt64;
  envEnd @10 :UInt64;
}

enum VmaKind {
  anon @0;          # private anonymous
  sharedAnon @1;    # MAP_SHARED|MAP_ANONYMOUS (shmem)
  file @2;          # file-backed, private or shared
  heap @3;
  stack @4;
  vdso @5;
  vvar @6;
  vvarVclock @7;
  vsyscall @8;
}

struct Vma {
  start @0 :UInt64;
  end @1 :UInt64;
  prot @2 :UInt8;            # PROT_READ=1 WRITE=2 EXEC=4
  shared @3 :Bool;
  kind @4 :VmaKind;
  path @5 :Text;
  offset @6 :UInt64;
  dev @7 :Text;
  inode @8 :UInt64;
  vmFlags @9 :List(Text);    # smaps VmFlags mnemonics
  pages @10 :UInt64;         # pages of this VMA stored in page blocks
}

struct Thread {
  tid @0 :Int32;
  regs @1 :List(UInt64);     # user_regs_struct order (see `spirit show`)
  xstate @2 :Data;           # standard-format XSAVE area
  rseqPtr @3 :UInt64;
  rseqLen @4 :UInt32;
  rseqSig @5 :UInt32;
  robustHead @6 :UInt64;
  robustLen @7 :UInt64;
  tidAddress @8 :UInt64;
  tidCacheAddr @9 :UInt64;   # where glibc caches this thread's tid (0: not found)
  name @10 :Text;            # the thread's comm (PR_SET_NAME)
}

struct Section {
  plugin @0 :Text;
  version @1 :UInt32;
  data @2 :Data;             # a message in the plugin's own schema
}

struct PageBlock {
  pid @0 :Int32;
  addr @1 :UInt64;
  len @2 :UInt64;
  flags @3 :UInt32;          # bit 0..7: codec (0 = raw); no codec is defined yet
}

struct Trailer {
  frames @0 :UInt64;         # frames before the trailer
  pageBytes @1 :UInt64;
  crcSum @2 :UInt64;         # wrapping sum of every frame's crc32c
  processes @3 :UInt32;
}
