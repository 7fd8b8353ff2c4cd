//! The image header of this host, and the CPU check a restore makes against it.

use crate::error::{Error, Result};
use crate::model::{CpuInfo, Header, XComponent};

/// CPU flags naming instructions a user-space program may execute. An image records
/// the ones its host had; a restore refuses a CPU lacking any of them (the program may
/// have chosen code paths for them at startup, and would die of SIGILL later).
const ISA_FLAGS: &[&str] = &[
    "fpu",
    "cx8",
    "cmov",
    "mmx",
    "fxsr",
    "sse",
    "sse2",
    "pni",
    "pclmulqdq",
    "ssse3",
    "fma",
    "cx16",
    "sse4_1",
    "sse4_2",
    "movbe",
    "popcnt",
    "aes",
    "xsave",
    "avx",
    "f16c",
    "rdrand",
    "lahf_lm",
    "abm",
    "sse4a",
    "xop",
    "fma4",
    "tbm",
    "fsgsbase",
    "bmi1",
    "avx2",
    "bmi2",
    "erms",
    "invpcid",
    "rdseed",
    "adx",
    "clflushopt",
    "clwb",
    "sha_ni",
    "avx512f",
    "avx512dq",
    "avx512ifma",
    "avx512cd",
    "avx512bw",
    "avx512vl",
    "avx512vbmi",
    "avx512_vbmi2",
    "gfni",
    "vaes",
    "vpclmulqdq",
    "avx512_vnni",
    "avx512_bitalg",
    "avx512_vpopcntdq",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_bf16",
    "amx_tile",
    "amx_int8",
    "movdiri",
    "movdir64b",
    "rdpid",
    "rdtscp",
    "fsrm",
    "serialize",
    "pku",
    "ospke",
    "clzero",
    "xsaveopt",
    "xsavec",
    "xgetbv1",
    "xsaves",
    "cldemote",
    "waitpkg",
    "avx_ifma",
    "avx_vnni_int8",
    "avx_ne_convert",
    "cmpccxadd",
    "sha512",
    "sm3",
    "sm4",
    "avx10",
];

const XFEATURE_NAMES: &[&str] = &[
    "x87",
    "sse",
    "avx",
    "mpx-bndregs",
    "mpx-bndcsr",
    "avx512-opmask",
    "avx512-zmm-hi256",
    "avx512-hi16-zmm",
    "pt",
    "pkru",
    "pasid",
    "cet-user",
    "cet-supervisor",
    "hdc",
    "uintr",
    "lbr",
    "hwp",
    "amx-tilecfg",
    "amx-tiledata",
    "apx",
];

/// This host's CPU as an image records it.
pub fn host_cpu() -> CpuInfo {
    let c = spirit_kmod::host_cpu();
    CpuInfo {
        vendor: c.vendor,
        model_name: c.model_name,
        xfeatures: c.xfeatures,
        xsave_size: c.xsave_size,
        components: c
            .components
            .iter()
            .map(|x| XComponent {
                index: x.index,
                offset: x.offset,
                size: x.size,
            })
            .collect(),
        flags: c
            .flags
            .into_iter()
            .filter(|f| ISA_FLAGS.contains(&f.as_str()))
            .collect(),
    }
}

/// A header for an image taken now on this host (plugins and tree left empty).
pub fn host_header() -> Header {
    let uts = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    Header {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        arch: std::env::consts::ARCH.to_string(),
        kernel: field(|u| u.release()),
        hostname: field(|u| u.nodename()),
        time_ns: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        cpu: host_cpu(),
        plugins: Vec::new(),
        tree: Vec::new(),
    }
}

fn xfeature_name(bit: usize) -> String {
    XFEATURE_NAMES
        .get(bit)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("xfeature-{bit}"))
}

/// Refuse to restore an image on a CPU that lacks an xsave feature or an ISA flag the
/// image's host had.
pub fn check_cpu(image: &CpuInfo, host: &CpuInfo) -> Result<()> {
    let mut missing = Vec::new();
    let lacking = image.xfeatures & !host.xfeatures;
    let names: Vec<String> = (0..64)
        .filter(|b| lacking & (1u64 << b) != 0)
        .map(xfeature_name)
        .collect();
    if !names.is_empty() {
        missing.push(format!("xsave features {}", names.join(", ")));
    }
    let flags: Vec<&str> = image
        .flags
        .iter()
        .filter(|f| !host.flags.contains(f))
        .map(String::as_str)
        .collect();
    if !flags.is_empty() {
        missing.push(format!("CPU flags {}", flags.join(", ")));
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::CpuMismatch {
        missing: missing.join("; "),
        image_cpu: image.model_name.clone(),
    })
}

/// Move an XSAVE area recorded with the image CPU's layout into this CPU's layout
/// (standard format: the legacy area and header are fixed; each component's offset is
/// CPU-specific, e.g. PKRU sits elsewhere on AMD and Intel: KERNEL-NOTES P15).
pub fn adapt_xstate(xstate: &[u8], image: &CpuInfo, host: &CpuInfo) -> Result<Vec<u8>> {
    if image.components == host.components && xstate.len() as u32 == host.xsave_size {
        return Ok(xstate.to_vec());
    }
    let bad = |what: String| {
        Error::Restore(format!(
            "xstate from the image cannot be used on this CPU: {what}"
        ))
    };
    if xstate.len() < 576 {
        return Err(bad(format!("only {} bytes", xstate.len())));
    }
    let mut out = vec![0u8; (host.xsave_size as usize).max(576)];
    out[..576].copy_from_slice(&xstate[..576]);
    let bv = u64::from_le_bytes(xstate[512..520].try_into().expect("8 bytes"));
    for bit in 2..64u8 {
        if bv & (1u64 << bit) == 0 {
            continue;
        }
        let src = image.components.iter().find(|c| c.index == bit);
        let dst = host.components.iter().find(|c| c.index == bit);
        let (Some(src), Some(dst)) = (src, dst) else {
            return Err(bad(format!(
                "state component {} has no place",
                xfeature_name(bit as usize)
            )));
        };
        let (s, d, n) = (
            src.offset as usize,
            dst.offset as usize,
            src.size.min(dst.size) as usize,
        );
        if s + n > xstate.len() || d + n > out.len() {
            return Err(bad(format!(
                "state component {} out of bounds",
                xfeature_name(bit as usize)
            )));
        }
        out[d..d + n].copy_from_slice(&xstate[s..s + n]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(xfeatures: u64, flags: &[&str], comps: &[(u8, u32, u32)]) -> CpuInfo {
        CpuInfo {
            vendor: "v".into(),
            model_name: "m".into(),
            xfeatures,
            xsave_size: comps.iter().map(|c| c.1 + c.2).max().unwrap_or(576),
            components: comps
                .iter()
                .map(|&(index, offset, size)| XComponent {
                    index,
                    offset,
                    size,
                })
                .collect(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn cpu_check_names_what_is_missing() {
        let host = cpu(0x207, &["sse2", "avx2"], &[]);
        assert!(check_cpu(&cpu(0x207, &["avx2"], &[]), &host).is_ok());
        let e = check_cpu(&cpu(0x2e7, &["avx2", "avx512f"], &[]), &host).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("avx512-opmask") && msg.contains("avx512f"),
            "{msg}"
        );
        assert_eq!(e.exit_code(), 9);
    }

    #[test]
    fn xstate_components_move_to_this_cpus_offsets() {
        // AVX at 576 on both; PKRU at 2432 (AMD-like) vs 2688 (Intel-like).
        let image = cpu(0x207, &[], &[(2, 576, 256), (9, 2432, 8)]);
        let host = cpu(0x207, &[], &[(2, 576, 256), (9, 2688, 8)]);
        let mut xs = vec![0u8; 2440];
        xs[512..520].copy_from_slice(&0x204u64.to_le_bytes());
        xs[576] = 0x11;
        xs[2432..2440].copy_from_slice(&[0x55; 8]);
        let out = adapt_xstate(&xs, &image, &host).unwrap();
        assert_eq!(out.len(), 2696);
        assert_eq!(out[576], 0x11);
        assert_eq!(&out[2688..2696], &[0x55; 8]);
        assert_eq!(adapt_xstate(&xs, &image, &image).unwrap(), xs);
        assert!(adapt_xstate(&xs[..100], &image, &host).is_err());
    }
}
