//! What this CPU offers a process: enabled xsave features, the xsave layout, ISA flags.

use std::arch::x86_64::{__cpuid_count, CpuidResult};

/// One xsave state component's place in the standard (non-compacted) XSAVE layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XComponent {
    pub index: u8,
    pub offset: u32,
    pub size: u32,
}

/// The CPU facts an image records and a restore checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    pub vendor: String,
    pub model_name: String,
    /// XCR0: the xsave features the kernel enabled.
    pub xfeatures: u64,
    /// Size of the standard XSAVE area for all enabled features.
    pub xsave_size: u32,
    pub components: Vec<XComponent>,
    /// The kernel's CPU flag names (`/proc/cpuinfo`).
    pub flags: Vec<String>,
}

fn cpuid(leaf: u32, sub: u32) -> CpuidResult {
    // SAFETY: cpuid is available on every x86_64 CPU and has no side effects.
    #[allow(unused_unsafe)]
    unsafe {
        __cpuid_count(leaf, sub)
    }
}

fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called after cpuid reported OSXSAVE, so xgetbv(0) is permitted in
    // user mode; it reads XCR0 and touches no memory.
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Read the host CPU's features.
pub fn host_cpu() -> CpuFeatures {
    let v = cpuid(0, 0);
    let vendor: Vec<u8> = [v.ebx, v.edx, v.ecx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    let osxsave = cpuid(1, 0).ecx & (1 << 27) != 0;
    let xfeatures = if osxsave { xgetbv0() } else { 0 };
    let xsave_size = if osxsave { cpuid(0xd, 0).ebx } else { 0 };
    let components = (2..63u8)
        .filter(|i| xfeatures & (1u64 << i) != 0)
        .map(|i| {
            let r = cpuid(0xd, u32::from(i));
            XComponent {
                index: i,
                offset: r.ebx,
                size: r.eax,
            }
        })
        .collect();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    CpuFeatures {
        vendor: String::from_utf8_lossy(&vendor).into_owned(),
        model_name: field("model name"),
        xfeatures,
        xsave_size,
        components,
        flags,
    }
}

/// Where the standard-format XSAVE area ends when it holds the components in `bv`
/// (at least the legacy area and the header: 576 bytes).
pub(crate) fn xsave_end(bv: u64) -> usize {
    (2..63u32)
        .filter(|i| bv & (1u64 << i) != 0)
        .map(|i| {
            let r = cpuid(0xd, i);
            (r.ebx + r.eax) as usize
        })
        .fold(576, usize::max)
}
