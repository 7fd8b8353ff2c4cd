//! `spirit show`: everything in an image as JSON (plugins render their own sections),
//! and a human-readable rendering of it.

use crate::error::Result;
use crate::image::{Frame, ImageReader, FORMAT_MAJOR, FORMAT_MINOR};
use crate::model::{ProcessImage, ThreadState};
use crate::plugin::Pipeline;
use serde_json::{json, Map, Value};
use spirit_kmod::REG_NAMES;
use std::io::Read;

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

fn thread_json(t: &ThreadState) -> Value {
    let regs: Map<String, Value> = REG_NAMES
        .iter()
        .zip(t.regs.iter())
        .map(|(n, v)| (n.to_string(), Value::String(hex(*v))))
        .collect();
    let bv = t
        .xstate
        .get(512..520)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    json!({
        "tid": t.tid,
        "name": t.name,
        "regs": regs,
        "xstate": { "bytes": t.xstate.len(), "xstate_bv": bv.map(hex) },
        "rseq": t.rseq.map(|r| json!({"ptr": hex(r.ptr), "len": r.len, "sig": hex(u64::from(r.sig))})),
        "robust_list": { "head": hex(t.robust_head), "len": t.robust_len },
        "tid_address": hex(t.tid_address),
        "tid_cache": hex(t.tid_cache_addr),
    })
}

fn process_json(p: &ProcessImage, pipeline: &Pipeline) -> Value {
    let sections: Map<String, Value> = p
        .sections
        .iter()
        .map(|s| {
            let v = match pipeline.iter().find(|x| x.name() == s.plugin) {
                Some(plugin) => plugin
                    .show(&s.data)
                    .unwrap_or_else(|e| json!({ "error": e.to_string() })),
                None => json!({ "unknown_plugin": true, "bytes": s.data.len() }),
            };
            (
                s.plugin.clone(),
                json!({ "version": s.version, "content": v }),
            )
        })
        .collect();
    let vmas: Vec<Value> = p
        .vmas
        .iter()
        .map(|v| {
            json!({
                "start": hex(v.start), "end": hex(v.end),
                "prot": format!("{}{}{}", if v.prot & 1 != 0 {"r"} else {"-"}, if v.prot & 2 != 0 {"w"} else {"-"}, if v.prot & 4 != 0 {"x"} else {"-"}),
                "shared": v.shared, "kind": v.kind, "path": v.path, "offset": hex(v.offset),
                "vm_flags": v.vm_flags.join(" "), "pages": v.pages,
            })
        })
        .collect();
    let auxv: Vec<Value> = p
        .auxv
        .chunks(2)
        .map(|c| json!([c[0], hex(*c.get(1).unwrap_or(&0))]))
        .collect();
    json!({
        "pid": p.pid, "ppid": p.ppid, "pgid": p.pgid, "sid": p.sid, "uid": p.uid, "gid": p.gid,
        "comm": p.comm, "exe": p.exe, "personality": hex(u64::from(p.personality)),
        "pdeathsig": p.pdeathsig, "attrs": p.attrs,
        "mapped": p.mapped.iter().map(|o| json!({
            "path": o.path, "dev": o.dev, "inode": o.inode, "size": o.data.len(),
        })).collect::<Vec<_>>(),
        "embedded": p.embedded.iter().map(|o| json!({
            "hash": o.hash, "size": o.size, "compressed": o.zstd.len(),
        })).collect::<Vec<_>>(),
        "creds": p.creds, "files": p.files, "rlimits": p.rlimits, "mm": p.mm, "auxv": auxv,
        "vmas": vmas,
        "threads": p.threads.iter().map(thread_json).collect::<Vec<_>>(),
        "security": crate::security::show(&p.security, &p.threads.iter().map(|t| t.tid).collect::<Vec<_>>()),
        "sections": sections,
    })
}

/// Decode a whole image (checking it as a restore would) into JSON.
pub fn show<R: Read>(src: R, path: &str, pipeline: &Pipeline) -> Result<Value> {
    let mut rd = ImageReader::new(src, path)?;
    let mut buf = Vec::new();
    let mut header = Value::Null;
    let mut processes = Vec::new();
    let (mut blocks, mut bytes) = (0u64, 0u64);
    let trailer = loop {
        match rd.next_frame(&mut buf)? {
            Frame::Header(h) => header = serde_json::to_value(&*h).unwrap_or(Value::Null),
            Frame::Process(p) => processes.push(process_json(&p, pipeline)),
            Frame::Pages { data, .. } => {
                blocks += 1;
                bytes += data.len() as u64;
            }
            Frame::End(t) => break t,
        }
    };
    Ok(json!({
        "format": format!("{FORMAT_MAJOR}.{FORMAT_MINOR}"),
        "header": header,
        "processes": processes,
        "pages": { "blocks": blocks, "bytes": bytes },
        "trailer": trailer,
        "image_bytes": rd.position(),
    }))
}

/// A human-readable rendering of [`show`]'s JSON.
pub fn render_text(v: &Value) -> String {
    let mut out = String::new();
    let h = &v["header"];
    let s = |x: &Value| {
        x.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| x.to_string())
    };
    out += &format!(
        "spirit image, format {}, written by spirit {} on {} (kernel {}, {})\n",
        s(&v["format"]),
        s(&h["tool_version"]),
        s(&h["hostname"]),
        s(&h["kernel"]),
        s(&h["arch"])
    );
    out += &format!(
        "cpu: {} ({}), xfeatures {:#x}, xsave {} bytes\n",
        s(&h["cpu"]["model_name"]),
        s(&h["cpu"]["vendor"]),
        h["cpu"]["xfeatures"].as_u64().unwrap_or(0),
        h["cpu"]["xsave_size"]
    );
    let plugins: Vec<String> = h["plugins"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| format!("{} v{}", s(&p["name"]), p["version"]))
                .collect()
        })
        .unwrap_or_default();
    out += &format!("plugins: {}\n", plugins.join(", "));
    for p in v["processes"].as_array().into_iter().flatten() {
        out += &format!(
            "\nprocess {} ({}) exe {} ppid {} pgid {} sid {} uid {}\n",
            p["pid"],
            s(&p["comm"]),
            s(&p["exe"]),
            p["ppid"],
            p["pgid"],
            p["sid"],
            p["uid"]
        );
        let mm = &p["mm"];
        out += &format!(
            "  mm: code {:#x}-{:#x} brk {:#x}-{:#x} stack {:#x}\n",
            mm["start_code"].as_u64().unwrap_or(0),
            mm["end_code"].as_u64().unwrap_or(0),
            mm["start_brk"].as_u64().unwrap_or(0),
            mm["brk"].as_u64().unwrap_or(0),
            mm["start_stack"].as_u64().unwrap_or(0)
        );
        out += "  files:\n";
        for f in p["files"].as_array().into_iter().flatten() {
            let opt = |k: &str, label: &str| match f[k].as_str() {
                Some(x) if !x.is_empty() => format!(" {label} {x}"),
                _ => String::new(),
            };
            out += &format!(
                "    {} {} bytes mode {:o}{}{}\n",
                s(&f["path"]),
                f["size"],
                f["mode"].as_u64().unwrap_or(0),
                opt("build_id", "build-id"),
                opt("hash", "blake3"),
            );
        }
        out += "  memory:\n";
        for m in p["vmas"].as_array().into_iter().flatten() {
            out += &format!(
                "    {:>14}-{:<14} {} {:<6} {:>6} pages  {}\n",
                s(&m["start"]),
                s(&m["end"]),
                s(&m["prot"]),
                if m["shared"].as_bool() == Some(true) {
                    "shared"
                } else {
                    "priv"
                },
                m["pages"],
                s(&m["path"])
            );
        }
        for t in p["threads"].as_array().into_iter().flatten() {
            out += &format!(
                "  thread {} ({}): rip {} rsp {} orig_rax {} rax {} xstate {} bytes (bv {})\n",
                t["tid"],
                s(&t["name"]),
                s(&t["regs"]["rip"]),
                s(&t["regs"]["rsp"]),
                s(&t["regs"]["orig_rax"]),
                s(&t["regs"]["rax"]),
                t["xstate"]["bytes"],
                s(&t["xstate"]["xstate_bv"])
            );
        }
        for t in p["security"].as_array().into_iter().flatten() {
            out += &format!(
                "  security of {}: caps eff {} prm {} inh {} bnd {} amb {}, securebits {}, no_new_privs {}, seccomp {} ({} filters), syscall user dispatch {}\n",
                t["tid"],
                s(&t["cap_effective"]),
                s(&t["cap_permitted"]),
                s(&t["cap_inheritable"]),
                s(&t["cap_bounding"]),
                s(&t["cap_ambient"]),
                s(&t["securebits"]),
                t["no_new_privs"],
                s(&t["seccomp"]),
                t["filters"].as_array().map_or(0, Vec::len),
                if t["syscall_user_dispatch"] == "off" { "off" } else { "on" }
            );
        }
        if let Some(secs) = p["sections"].as_object() {
            for (name, sec) in secs {
                out += &format!("  [{} v{}]\n", name, sec["version"]);
                let pretty = serde_json::to_string_pretty(&sec["content"]).unwrap_or_default();
                for line in pretty.lines() {
                    out += &format!("    {line}\n");
                }
            }
        }
    }
    out += &format!(
        "\npages: {} blocks, {} bytes; image {} bytes; trailer ok ({} frames)\n",
        v["pages"]["blocks"], v["pages"]["bytes"], v["image_bytes"], v["trailer"]["frames"]
    );
    out
}
