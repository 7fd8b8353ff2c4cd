//! The model (`model.rs`) to and from Cap'n Proto messages (`schema/core.capnp`).
//! Decoding never panics: every malformed message is a `capnp::Error`.

use crate::core_capnp as s;
use crate::model::*;
use capnp::message::{Builder, ReaderOptions};
use capnp::serialize;

pub type DecodeResult<T> = Result<T, capnp::Error>;

/// Reader options for a message of `len` bytes from outside (an image, a plugin
/// section). The traversal limit is twice the message's words (at least 64 Ki words):
/// a decoder reads each part once, and a list of zero-sized elements, which Cap'n Proto
/// charges one word per element, cannot make it build more entries than the message
/// has room for (found by fuzzing: a 2 KiB header claimed 60 million tree nodes).
pub fn reader_options_for(len: usize) -> ReaderOptions {
    let mut o = ReaderOptions::new();
    o.traversal_limit_in_words(Some((len / 4).max(1 << 16)))
        .nesting_limit(32);
    o
}

fn to_bytes(msg: &Builder<capnp::message::HeapAllocator>) -> Vec<u8> {
    serialize::write_message_to_words(msg)
}

fn text(r: capnp::Result<capnp::text::Reader<'_>>) -> DecodeResult<String> {
    Ok(r?.to_str()?.to_string())
}

pub fn encode_header(h: &Header) -> Vec<u8> {
    let mut msg = Builder::new_default();
    let mut b = msg.init_root::<s::header::Builder>();
    b.set_tool_version(&h.tool_version);
    b.set_arch(&h.arch);
    b.set_kernel(&h.kernel);
    b.set_hostname(&h.hostname);
    b.set_time_ns(h.time_ns);
    {
        let mut c = b.reborrow().init_cpu();
        c.set_vendor(&h.cpu.vendor);
        c.set_model_name(&h.cpu.model_name);
        c.set_xfeatures(h.cpu.xfeatures);
        c.set_xsave_size(h.cpu.xsave_size);
        let mut comps = c.reborrow().init_components(h.cpu.components.len() as u32);
        for (i, x) in h.cpu.components.iter().enumerate() {
            let mut e = comps.reborrow().get(i as u32);
            e.set_index(x.index);
            e.set_offset(x.offset);
            e.set_size(x.size);
        }
        let mut flags = c.init_flags(h.cpu.flags.len() as u32);
        for (i, f) in h.cpu.flags.iter().enumerate() {
            flags.set(i as u32, f);
        }
    }
    let mut pl = b.reborrow().init_plugins(h.plugins.len() as u32);
    for (i, p) in h.plugins.iter().enumerate() {
        let mut e = pl.reborrow().get(i as u32);
        e.set_name(&p.name);
        e.set_version(p.version);
    }
    let mut tree = b.init_tree(h.tree.len() as u32);
    for (i, n) in h.tree.iter().enumerate() {
        let mut e = tree.reborrow().get(i as u32);
        e.set_pid(n.pid);
        e.set_ppid(n.ppid);
        e.set_pgid(n.pgid);
        e.set_sid(n.sid);
        e.set_zombie(n.zombie);
        e.set_exit_status(n.exit_status);
        let mut t = e.init_threads(n.threads.len() as u32);
        for (j, tid) in n.threads.iter().enumerate() {
            t.set(j as u32, *tid);
        }
    }
    to_bytes(&msg)
}

pub fn decode_header(bytes: &[u8]) -> DecodeResult<Header> {
    let msg =
        serialize::read_message_from_flat_slice(&mut &bytes[..], reader_options_for(bytes.len()))?;
    let r = msg.get_root::<s::header::Reader>()?;
    let c = r.get_cpu()?;
    let cpu = CpuInfo {
        vendor: text(c.get_vendor())?,
        model_name: text(c.get_model_name())?,
        xfeatures: c.get_xfeatures(),
        xsave_size: c.get_xsave_size(),
        components: c
            .get_components()?
            .iter()
            .map(|x| XComponent {
                index: x.get_index(),
                offset: x.get_offset(),
                size: x.get_size(),
            })
            .collect(),
        flags: c
            .get_flags()?
            .iter()
            .map(text)
            .collect::<DecodeResult<_>>()?,
    };
    Ok(Header {
        tool_version: text(r.get_tool_version())?,
        arch: text(r.get_arch())?,
        kernel: text(r.get_kernel())?,
        hostname: text(r.get_hostname())?,
        time_ns: r.get_time_ns(),
        cpu,
        plugins: r
            .get_plugins()?
            .iter()
            .map(|p| {
                Ok(PluginInfo {
                    name: text(p.get_name())?,
                    version: p.get_version(),
                })
            })
            .collect::<DecodeResult<_>>()?,
        tree: r
            .get_tree()?
            .iter()
            .map(|n| {
                Ok(TreeNode {
                    pid: n.get_pid(),
                    ppid: n.get_ppid(),
                    pgid: n.get_pgid(),
                    sid: n.get_sid(),
                    zombie: n.get_zombie(),
                    exit_status: n.get_exit_status(),
                    threads: n.get_threads()?.iter().collect(),
                })
            })
            .collect::<DecodeResult<_>>()?,
    })
}

fn vma_kind_to(k: VmaKind) -> s::VmaKind {
    match k {
        VmaKind::Anon => s::VmaKind::Anon,
        VmaKind::SharedAnon => s::VmaKind::SharedAnon,
        VmaKind::File => s::VmaKind::File,
        VmaKind::Heap => s::VmaKind::Heap,
        VmaKind::Stack => s::VmaKind::Stack,
        VmaKind::Vdso => s::VmaKind::Vdso,
        VmaKind::Vvar => s::VmaKind::Vvar,
        VmaKind::VvarVclock => s::VmaKind::VvarVclock,
        VmaKind::Vsyscall => s::VmaKind::Vsyscall,
    }
}

fn vma_kind_from(k: s::VmaKind) -> VmaKind {
    match k {
        s::VmaKind::Anon => VmaKind::Anon,
        s::VmaKind::SharedAnon => VmaKind::SharedAnon,
        s::VmaKind::File => VmaKind::File,
        s::VmaKind::Heap => VmaKind::Heap,
        s::VmaKind::Stack => VmaKind::Stack,
        s::VmaKind::Vdso => VmaKind::Vdso,
        s::VmaKind::Vvar => VmaKind::Vvar,
        s::VmaKind::VvarVclock => VmaKind::VvarVclock,
        s::VmaKind::Vsyscall => VmaKind::Vsyscall,
    }
}

pub fn encode_process(p: &ProcessImage) -> Vec<u8> {
    let mut msg = Builder::new_default();
    let mut b = msg.init_root::<s::process::Builder>();
    b.set_pid(p.pid);
    b.set_ppid(p.ppid);
    b.set_pgid(p.pgid);
    b.set_sid(p.sid);
    b.set_uid(p.uid);
    b.set_gid(p.gid);
    b.set_comm(&p.comm);
    b.set_exe(&p.exe);
    b.set_personality(p.personality);
    b.set_pdeathsig(p.pdeathsig);
    b.set_fd_end(p.fd_end);
    crate::procattrs::encode(&p.attrs, b.reborrow().init_attrs());
    let mut mo = b.reborrow().init_mapped(p.mapped.len() as u32);
    for (i, o) in p.mapped.iter().enumerate() {
        let mut e = mo.reborrow().get(i as u32);
        e.set_dev(&o.dev);
        e.set_inode(o.inode);
        e.set_path(&o.path);
        e.set_data(&o.data);
    }
    let mut em = b.reborrow().init_embedded(p.embedded.len() as u32);
    for (i, o) in p.embedded.iter().enumerate() {
        let mut e = em.reborrow().get(i as u32);
        e.set_hash(&o.hash);
        e.set_size(o.size);
        e.set_zstd(&o.zstd);
    }
    let mut rl = b.reborrow().init_rlimits(p.rlimits.len() as u32);
    for (i, r) in p.rlimits.iter().enumerate() {
        let mut e = rl.reborrow().get(i as u32);
        e.set_resource(r.resource);
        e.set_cur(r.cur);
        e.set_max(r.max);
    }
    {
        let m = &p.mm;
        let mut e = b.reborrow().init_mm();
        e.set_start_code(m.start_code);
        e.set_end_code(m.end_code);
        e.set_start_data(m.start_data);
        e.set_end_data(m.end_data);
        e.set_start_brk(m.start_brk);
        e.set_brk(m.brk);
        e.set_start_stack(m.start_stack);
        e.set_arg_start(m.arg_start);
        e.set_arg_end(m.arg_end);
        e.set_env_start(m.env_start);
        e.set_env_end(m.env_end);
    }
    let mut auxv = b.reborrow().init_auxv(p.auxv.len() as u32);
    for (i, v) in p.auxv.iter().enumerate() {
        auxv.set(i as u32, *v);
    }
    let mut vmas = b.reborrow().init_vmas(p.vmas.len() as u32);
    for (i, v) in p.vmas.iter().enumerate() {
        let mut e = vmas.reborrow().get(i as u32);
        e.set_start(v.start);
        e.set_end(v.end);
        e.set_prot(v.prot);
        e.set_shared(v.shared);
        e.set_kind(vma_kind_to(v.kind));
        e.set_path(&v.path);
        e.set_offset(v.offset);
        e.set_dev(&v.dev);
        e.set_inode(v.inode);
        e.set_pages(v.pages);
        let mut f = e.init_vm_flags(v.vm_flags.len() as u32);
        for (j, x) in v.vm_flags.iter().enumerate() {
            f.set(j as u32, x);
        }
    }
    let mut th = b.reborrow().init_threads(p.threads.len() as u32);
    for (i, t) in p.threads.iter().enumerate() {
        let mut e = th.reborrow().get(i as u32);
        e.set_tid(t.tid);
        let mut regs = e.reborrow().init_regs(27);
        for (j, r) in t.regs.iter().enumerate() {
            regs.set(j as u32, *r);
        }
        e.set_xstate(&t.xstate);
        if let Some(r) = t.rseq {
            e.set_rseq_ptr(r.ptr);
            e.set_rseq_len(r.len);
            e.set_rseq_sig(r.sig);
        }
        e.set_robust_head(t.robust_head);
        e.set_robust_len(t.robust_len);
        e.set_tid_address(t.tid_address);
        e.set_tid_cache_addr(t.tid_cache_addr);
        e.set_name(&t.name);
    }
    let mut sec = b.reborrow().init_security(p.security.len() as u32);
    for (i, t) in p.security.iter().enumerate() {
        let mut e = sec.reborrow().get(i as u32);
        e.set_cap_inheritable(t.cap_inheritable);
        e.set_cap_permitted(t.cap_permitted);
        e.set_cap_effective(t.cap_effective);
        e.set_cap_bounding(t.cap_bounding);
        e.set_cap_ambient(t.cap_ambient);
        e.set_securebits(t.securebits);
        e.set_no_new_privs(t.no_new_privs);
        e.set_seccomp_mode(t.seccomp_mode);
        e.set_sud_mode(t.sud.mode);
        e.set_sud_selector(t.sud.selector);
        e.set_sud_offset(t.sud.offset);
        e.set_sud_len(t.sud.len);
        let mut fl = e.init_filters(t.filters.len() as u32);
        for (j, f) in t.filters.iter().enumerate() {
            let mut x = fl.reborrow().get(j as u32);
            x.set_flags(f.flags);
            x.set_program(&f.program);
        }
    }
    {
        let mut c = b.reborrow().init_creds();
        let mut u = c.reborrow().init_uids(4);
        for (i, v) in p.creds.uids.iter().enumerate() {
            u.set(i as u32, *v);
        }
        let mut g = c.reborrow().init_gids(4);
        for (i, v) in p.creds.gids.iter().enumerate() {
            g.set(i as u32, *v);
        }
        let mut gr = c.reborrow().init_groups(p.creds.groups.len() as u32);
        for (i, v) in p.creds.groups.iter().enumerate() {
            gr.set(i as u32, *v);
        }
        c.set_dumpable(p.creds.dumpable);
    }
    let mut files = b.reborrow().init_files(p.files.len() as u32);
    for (i, f) in p.files.iter().enumerate() {
        let mut e = files.reborrow().get(i as u32);
        e.set_path(&f.path);
        e.set_size(f.size);
        e.set_mtime_ns(f.mtime_ns);
        e.set_dev(f.dev);
        e.set_inode(f.inode);
        e.set_mode(f.mode);
        e.set_uid(f.uid);
        e.set_gid(f.gid);
        e.set_build_id(&f.build_id);
        e.set_hash(&f.hash);
    }
    let mut secs = b.init_sections(p.sections.len() as u32);
    for (i, sec) in p.sections.iter().enumerate() {
        let mut e = secs.reborrow().get(i as u32);
        e.set_plugin(&sec.plugin);
        e.set_version(sec.version);
        e.set_data(&sec.data);
    }
    to_bytes(&msg)
}

pub fn decode_process(bytes: &[u8]) -> DecodeResult<ProcessImage> {
    let msg =
        serialize::read_message_from_flat_slice(&mut &bytes[..], reader_options_for(bytes.len()))?;
    let r = msg.get_root::<s::process::Reader>()?;
    let m = r.get_mm()?;
    let mut threads = Vec::new();
    for t in r.get_threads()?.iter() {
        let regs_list = t.get_regs()?;
        if regs_list.len() != 27 {
            return Err(capnp::Error::failed(format!(
                "thread {} has {} registers, expected 27",
                t.get_tid(),
                regs_list.len()
            )));
        }
        let mut regs = [0u64; 27];
        for (j, v) in regs_list.iter().enumerate() {
            regs[j] = v;
        }
        threads.push(ThreadState {
            tid: t.get_tid(),
            regs,
            xstate: t.get_xstate()?.to_vec(),
            rseq: (t.get_rseq_ptr() != 0).then(|| spirit_kmod::RseqConfig {
                ptr: t.get_rseq_ptr(),
                len: t.get_rseq_len(),
                sig: t.get_rseq_sig(),
                flags: 0,
            }),
            robust_head: t.get_robust_head(),
            robust_len: t.get_robust_len(),
            tid_address: t.get_tid_address(),
            tid_cache_addr: t.get_tid_cache_addr(),
            name: text(t.get_name())?,
        });
    }
    let mut vmas = Vec::new();
    for v in r.get_vmas()?.iter() {
        vmas.push(Vma {
            start: v.get_start(),
            end: v.get_end(),
            prot: v.get_prot(),
            shared: v.get_shared(),
            kind: vma_kind_from(v.get_kind()?),
            path: text(v.get_path())?,
            offset: v.get_offset(),
            dev: text(v.get_dev())?,
            inode: v.get_inode(),
            vm_flags: v
                .get_vm_flags()?
                .iter()
                .map(text)
                .collect::<DecodeResult<_>>()?,
            pages: v.get_pages(),
        });
    }
    let c = r.get_creds()?;
    let four = |l: capnp::primitive_list::Reader<'_, u32>| -> DecodeResult<[u32; 4]> {
        let v: Vec<u32> = l.iter().collect();
        if v.is_empty() {
            return Ok([0; 4]);
        }
        v.try_into().map_err(|v: Vec<u32>| {
            capnp::Error::failed(format!("{} ids where 4 are expected", v.len()))
        })
    };
    let creds = Creds {
        uids: four(c.get_uids()?)?,
        gids: four(c.get_gids()?)?,
        groups: c.get_groups()?.iter().collect(),
        dumpable: c.get_dumpable(),
    };
    let mut files = Vec::new();
    for f in r.get_files()?.iter() {
        files.push(FileId {
            path: text(f.get_path())?,
            size: f.get_size(),
            mtime_ns: f.get_mtime_ns(),
            dev: f.get_dev(),
            inode: f.get_inode(),
            mode: f.get_mode(),
            uid: f.get_uid(),
            gid: f.get_gid(),
            build_id: text(f.get_build_id())?,
            hash: text(f.get_hash())?,
        });
    }
    let mut security = Vec::new();
    for t in r.get_security()?.iter() {
        let mut filters = Vec::new();
        for f in t.get_filters()?.iter() {
            let program = f.get_program()?.to_vec();
            if program.is_empty() || program.len() % 8 != 0 || program.len() > 4096 * 8 {
                return Err(capnp::Error::failed(format!(
                    "a seccomp filter of {} bytes",
                    program.len()
                )));
            }
            filters.push(SeccompFilter {
                flags: f.get_flags(),
                program,
            });
        }
        security.push(ThreadSecurity {
            cap_inheritable: t.get_cap_inheritable(),
            cap_permitted: t.get_cap_permitted(),
            cap_effective: t.get_cap_effective(),
            cap_bounding: t.get_cap_bounding(),
            cap_ambient: t.get_cap_ambient(),
            securebits: t.get_securebits(),
            no_new_privs: t.get_no_new_privs(),
            seccomp_mode: t.get_seccomp_mode(),
            filters,
            sud: spirit_kmod::SudConfig {
                mode: t.get_sud_mode(),
                selector: t.get_sud_selector(),
                offset: t.get_sud_offset(),
                len: t.get_sud_len(),
            },
        });
    }
    if !security.is_empty() && security.len() != threads.len() {
        return Err(capnp::Error::failed(format!(
            "security state of {} threads for {} threads",
            security.len(),
            threads.len()
        )));
    }
    Ok(ProcessImage {
        security,
        creds,
        files,
        pid: r.get_pid(),
        ppid: r.get_ppid(),
        pgid: r.get_pgid(),
        sid: r.get_sid(),
        uid: r.get_uid(),
        gid: r.get_gid(),
        comm: text(r.get_comm())?,
        exe: text(r.get_exe())?,
        personality: r.get_personality(),
        pdeathsig: r.get_pdeathsig(),
        fd_end: r.get_fd_end(),
        attrs: crate::procattrs::decode(r.get_attrs()?)?,
        mapped: r
            .get_mapped()?
            .iter()
            .map(|o| {
                Ok(MappedObject {
                    dev: text(o.get_dev())?,
                    inode: o.get_inode(),
                    path: text(o.get_path())?,
                    data: o.get_data()?.to_vec(),
                })
            })
            .collect::<DecodeResult<_>>()?,
        embedded: r
            .get_embedded()?
            .iter()
            .map(|o| {
                Ok(EmbeddedFile {
                    hash: text(o.get_hash())?,
                    size: o.get_size(),
                    zstd: o.get_zstd()?.to_vec(),
                })
            })
            .collect::<DecodeResult<_>>()?,
        rlimits: r
            .get_rlimits()?
            .iter()
            .map(|x| Rlimit {
                resource: x.get_resource(),
                cur: x.get_cur(),
                max: x.get_max(),
            })
            .collect(),
        mm: MmState {
            start_code: m.get_start_code(),
            end_code: m.get_end_code(),
            start_data: m.get_start_data(),
            end_data: m.get_end_data(),
            start_brk: m.get_start_brk(),
            brk: m.get_brk(),
            start_stack: m.get_start_stack(),
            arg_start: m.get_arg_start(),
            arg_end: m.get_arg_end(),
            env_start: m.get_env_start(),
            env_end: m.get_env_end(),
        },
        auxv: r.get_auxv()?.iter().collect(),
        vmas,
        threads,
        sections: r
            .get_sections()?
            .iter()
            .map(|x| {
                Ok(Section {
                    plugin: text(x.get_plugin())?,
                    version: x.get_version(),
                    data: x.get_data()?.to_vec(),
                })
            })
            .collect::<DecodeResult<_>>()?,
    })
}

/// Header of one block of raw pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageBlockHeader {
    pub pid: i32,
    pub addr: u64,
    pub len: u64,
    pub flags: u32,
}

pub fn encode_page_block(p: &PageBlockHeader) -> Vec<u8> {
    let mut msg = Builder::new_default();
    let mut b = msg.init_root::<s::page_block::Builder>();
    b.set_pid(p.pid);
    b.set_addr(p.addr);
    b.set_len(p.len);
    b.set_flags(p.flags);
    to_bytes(&msg)
}

pub fn decode_page_block(bytes: &[u8]) -> DecodeResult<PageBlockHeader> {
    let msg =
        serialize::read_message_from_flat_slice(&mut &bytes[..], reader_options_for(bytes.len()))?;
    let r = msg.get_root::<s::page_block::Reader>()?;
    Ok(PageBlockHeader {
        pid: r.get_pid(),
        addr: r.get_addr(),
        len: r.get_len(),
        flags: r.get_flags(),
    })
}

/// Counts that close an image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TrailerInfo {
    pub frames: u64,
    pub page_bytes: u64,
    pub crc_sum: u64,
    pub processes: u32,
}

pub fn encode_trailer(t: &TrailerInfo) -> Vec<u8> {
    let mut msg = Builder::new_default();
    let mut b = msg.init_root::<s::trailer::Builder>();
    b.set_frames(t.frames);
    b.set_page_bytes(t.page_bytes);
    b.set_crc_sum(t.crc_sum);
    b.set_processes(t.processes);
    to_bytes(&msg)
}

pub fn decode_trailer(bytes: &[u8]) -> DecodeResult<TrailerInfo> {
    let msg =
        serialize::read_message_from_flat_slice(&mut &bytes[..], reader_options_for(bytes.len()))?;
    let r = msg.get_root::<s::trailer::Reader>()?;
    Ok(TrailerInfo {
        frames: r.get_frames(),
        page_bytes: r.get_page_bytes(),
        crc_sum: r.get_crc_sum(),
        processes: r.get_processes(),
    })
}
