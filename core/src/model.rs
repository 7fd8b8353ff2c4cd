//! The in-memory model of an image: what `dump` collects and `restore` consumes.
//! `codec` maps it to and from the Cap'n Proto schema in `schema/core.capnp`.

use serde::Serialize;

/// The image header: where and when the image was taken, and what it needs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Header {
    pub tool_version: String,
    pub arch: String,
    pub kernel: String,
    pub hostname: String,
    pub time_ns: u64,
    pub cpu: CpuInfo,
    pub plugins: Vec<PluginInfo>,
    pub tree: Vec<TreeNode>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CpuInfo {
    pub vendor: String,
    pub model_name: String,
    pub xfeatures: u64,
    pub xsave_size: u32,
    pub components: Vec<XComponent>,
    pub flags: Vec<String>,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct XComponent {
    pub index: u8,
    pub offset: u32,
    pub size: u32,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub version: u32,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TreeNode {
    pub pid: i32,
    pub ppid: i32,
    pub threads: Vec<i32>,
    pub pgid: i32,
    pub sid: i32,
    /// Dead but not reaped by its parent at checkpoint: recreated as a zombie.
    pub zombie: bool,
    /// A zombie's wait status (exit code << 8, or the killing signal).
    pub exit_status: i32,
}

/// One process's core state, plus the plugins' opaque sections.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessImage {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    pub exe: String,
    pub personality: u32,
    pub rlimits: Vec<Rlimit>,
    pub mm: MmState,
    pub auxv: Vec<u64>,
    pub vmas: Vec<Vma>,
    pub threads: Vec<ThreadState>,
    pub sections: Vec<Section>,
    pub creds: Creds,
    /// Identity of the executable and every mapped file at checkpoint.
    pub files: Vec<FileId>,
    /// Signal sent to the process when its parent dies (0: none).
    pub pdeathsig: i32,
    /// One past the highest descriptor number the process had (every plugin's
    /// descriptors included): restore parks inherited descriptors above it.
    pub fd_end: i32,
    /// Scheduler, prctl and /proc attributes.
    pub attrs: crate::procattrs::ProcAttrs,
    /// Files deleted while mapped, with their content.
    pub mapped: Vec<MappedObject>,
    /// Per thread (in `threads` order): capabilities, securebits, no_new_privs,
    /// seccomp, syscall user dispatch. Empty in images that did not record them.
    pub security: Vec<ThreadSecurity>,
    /// Content of needed files (`spirit dump --embed-files`), each content in the
    /// first process record that needs it ([`crate::fileid::embed`]).
    pub embedded: Vec<EmbeddedFile>,
}

/// A needed file's content carried in the image, addressed by its hash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmbeddedFile {
    /// BLAKE3 of the content, lower-case hex (as in [`FileId::hash`]).
    pub hash: String,
    /// Uncompressed size.
    pub size: u64,
    /// The content, zstd-compressed.
    pub zstd: Vec<u8>,
}

/// A file the process maps that was deleted since (memfds included): its content.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct MappedObject {
    pub dev: String,
    pub inode: u64,
    pub path: String,
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// A thread's security state (see [`crate::security`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadSecurity {
    pub cap_inheritable: u64,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub cap_bounding: u64,
    pub cap_ambient: u64,
    pub securebits: u32,
    pub no_new_privs: bool,
    /// 0 off, 1 strict, 2 filter.
    pub seccomp_mode: u8,
    /// Index 0 is the oldest filter.
    pub filters: Vec<SeccompFilter>,
    /// Syscall user dispatch (mode 0: off).
    pub sud: spirit_kmod::SudConfig,
}

/// One seccomp filter program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeccompFilter {
    pub flags: u64,
    /// `struct sock_filter[]`, 8 bytes per instruction.
    pub program: Vec<u8>,
}

/// Who the process runs as.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Creds {
    /// real, effective, saved, filesystem
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub groups: Vec<u32>,
    pub dumpable: u8,
}

/// What a file was at checkpoint: a restore refuses a file that changed since
/// (comparison and hashing in [`crate::fileid`]).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct FileId {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub dev: u64,
    pub inode: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// ELF build-id, lower-case hex (empty: none, or not an ELF file).
    pub build_id: String,
    /// BLAKE3 of the content, lower-case hex (empty: not hashed).
    pub hash: String,
}

impl ProcessImage {
    pub fn section(&self, plugin: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.plugin == plugin)
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: u32,
    pub cur: u64,
    pub max: u64,
}

/// The `PR_SET_MM_MAP` fields (brk from an injected `brk(0)`, the rest from stat).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct MmState {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VmaKind {
    Anon,
    SharedAnon,
    File,
    Heap,
    Stack,
    Vdso,
    Vvar,
    VvarVclock,
    Vsyscall,
}

impl VmaKind {
    /// Kernel-provided special mappings: never dumped, never recreated by mmap.
    pub fn is_special(self) -> bool {
        matches!(
            self,
            VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::Vsyscall
        )
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub prot: u8,
    pub shared: bool,
    pub kind: VmaKind,
    pub path: String,
    pub offset: u64,
    pub dev: String,
    pub inode: u64,
    pub vm_flags: Vec<String>,
    pub pages: u64,
}

impl Vma {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub fn has_flag(&self, f: &str) -> bool {
        self.vm_flags.iter().any(|x| x == f)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadState {
    pub tid: i32,
    pub regs: [u64; 27],
    pub xstate: Vec<u8>,
    pub rseq: Option<spirit_kmod::RseqConfig>,
    pub robust_head: u64,
    pub robust_len: u64,
    pub tid_address: u64,
    /// Address of the C library's cached copy of the tid (glibc: `struct pthread.tid`,
    /// 16 bytes before the robust list head), verified at checkpoint; 0 if not found.
    /// A restore with new tids rewrites it (KERNEL-NOTES P11).
    pub tid_cache_addr: u64,
    /// The thread's name (comm).
    pub name: String,
}

/// A plugin's contribution to one process, in the plugin's own schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub plugin: String,
    pub version: u32,
    pub data: Vec<u8>,
}
