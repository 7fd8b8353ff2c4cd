//! Every failure mode of the image stream: round trip, truncation at every length, a
//! flipped byte at every offset, versions, kinds, lengths, trailer mismatch.

use super::*;
use crate::error::Error;
use crate::model::*;

fn sample_header() -> Header {
    Header {
        tool_version: "0.1.0".into(),
        arch: "x86_64".into(),
        kernel: "6.18".into(),
        hostname: "h".into(),
        time_ns: 42,
        cpu: CpuInfo {
            vendor: "v".into(),
            model_name: "m".into(),
            xfeatures: 0x207,
            xsave_size: 2440,
            components: vec![XComponent {
                index: 2,
                offset: 576,
                size: 256,
            }],
            flags: vec!["sse2".into(), "avx2".into()],
        },
        plugins: vec![PluginInfo {
            name: "files".into(),
            version: 1,
        }],
        tree: vec![TreeNode {
            pid: 7,
            ppid: 1,
            threads: vec![7, 8],
            pgid: 7,
            sid: 1,
            zombie: false,
            exit_status: 0,
        }],
    }
}

fn sample_process() -> ProcessImage {
    ProcessImage {
        pid: 7,
        ppid: 1,
        comm: "x".into(),
        exe: "/bin/x".into(),
        vmas: vec![Vma {
            start: 0x1000,
            end: 0x3000,
            prot: 3,
            shared: false,
            kind: VmaKind::Anon,
            path: String::new(),
            offset: 0,
            dev: "00:00".into(),
            inode: 0,
            vm_flags: vec!["rd".into(), "wr".into()],
            pages: 2,
        }],
        threads: vec![ThreadState {
            tid: 7,
            regs: [5; 27],
            xstate: vec![1; 600],
            name: "worker".into(),
            ..Default::default()
        }],
        security: vec![ThreadSecurity {
            cap_effective: 0x3,
            cap_permitted: 0x7,
            cap_bounding: 0x1ff,
            no_new_privs: true,
            seccomp_mode: 2,
            // ret ALLOW
            filters: vec![SeccompFilter {
                flags: 2,
                program: vec![6, 0, 0, 0, 0, 0, 0xff, 0x7f],
            }],
            ..Default::default()
        }],
        sections: vec![Section {
            plugin: "files".into(),
            version: 1,
            data: vec![0; 16],
        }],
        ..Default::default()
    }
}

fn sample_image() -> Vec<u8> {
    let mut w = ImageWriter::new(Vec::new()).unwrap();
    w.write_header(&sample_header()).unwrap();
    w.write_process(&sample_process()).unwrap();
    w.write_pages(7, 0x1000, &[0xab; 4096]).unwrap();
    w.write_pages(7, 0x2000, &[0xcd; 4096]).unwrap();
    w.finish().unwrap()
}

/// Read a whole image; Ok(number of page bytes) or the first error.
fn read_all(bytes: &[u8]) -> Result<u64, Error> {
    let mut r = ImageReader::new(bytes, "test.spirit")?;
    let mut buf = Vec::new();
    let mut pages = 0;
    loop {
        match r.next_frame(&mut buf)? {
            Frame::Pages { data, .. } => pages += data.len() as u64,
            Frame::End(_) => return Ok(pages),
            _ => {}
        }
    }
}

#[test]
fn round_trip() {
    let img = sample_image();
    let mut r = ImageReader::new(&img[..], "t").unwrap();
    let mut buf = Vec::new();
    let Frame::Header(h) = r.next_frame(&mut buf).unwrap() else {
        panic!("header first")
    };
    assert_eq!(*h, sample_header());
    let Frame::Process(p) = r.next_frame(&mut buf).unwrap() else {
        panic!("process second")
    };
    assert_eq!(*p, sample_process());
    let Frame::Pages { pid, addr, data } = r.next_frame(&mut buf).unwrap() else {
        panic!("pages")
    };
    assert_eq!((pid, addr), (7, 0x1000));
    assert!(buf[data].iter().all(|&b| b == 0xab));
    assert!(matches!(
        r.next_frame(&mut buf).unwrap(),
        Frame::Pages { addr: 0x2000, .. }
    ));
    let Frame::End(t) = r.next_frame(&mut buf).unwrap() else {
        panic!("trailer last")
    };
    assert_eq!((t.frames, t.page_bytes, t.processes), (4, 8192, 1));
    assert_eq!(r.position(), img.len() as u64);
}

#[test]
fn truncation_at_every_length_is_named() {
    let img = sample_image();
    for len in 0..img.len() {
        match read_all(&img[..len]) {
            Err(Error::Truncated { .. }) => {}
            other => panic!("cut at {len}: expected Truncated, got {other:?}"),
        }
    }
    assert_eq!(read_all(&img).unwrap(), 8192);
}

#[test]
fn a_flipped_byte_anywhere_is_detected() {
    let img = sample_image();
    for pos in 0..img.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = img.clone();
            bad[pos] ^= bit;
            match read_all(&bad) {
                Err(Error::Corrupt { .. } | Error::NotAnImage { .. } | Error::Truncated { .. }) => {
                }
                other => panic!("flip {bit:#x} at {pos}: expected corruption, got {other:?}"),
            }
        }
    }
}

fn preamble_with(major: u16, minor: u16) -> Vec<u8> {
    let mut p = preamble().to_vec();
    p[8..10].copy_from_slice(&major.to_le_bytes());
    p[10..12].copy_from_slice(&minor.to_le_bytes());
    let crc = crc32c::crc32c(&p[..12]);
    p[12..16].copy_from_slice(&crc.to_le_bytes());
    p
}

#[test]
fn newer_versions_are_refused_with_both_versions_named() {
    for (major, minor) in [
        (FORMAT_MAJOR, FORMAT_MINOR + 1),
        (FORMAT_MAJOR + 1, 0),
        (0, 0),
    ] {
        let mut img = sample_image();
        img[..16].copy_from_slice(&preamble_with(major, minor));
        match read_all(&img) {
            Err(e @ Error::Version { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&format!("{major}.{minor}")), "{msg}");
                assert!(
                    msg.contains(&format!("{FORMAT_MAJOR}.{FORMAT_MINOR}")),
                    "{msg}"
                );
            }
            other => panic!("{major}.{minor}: expected Version, got {other:?}"),
        }
    }
}

#[test]
fn not_an_image() {
    assert!(matches!(
        read_all(b"#!/bin/sh\necho hello\n"),
        Err(Error::NotAnImage { .. })
    ));
    assert!(matches!(read_all(b""), Err(Error::Truncated { .. })));
}

/// Frames with a valid crc but wrong content: the structure checks must catch them.
fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[0] = kind;
    h[8..16].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    let mut crc = crc32c::crc32c(&h[..4]);
    crc = crc32c::crc32c_append(crc, &h[8..16]);
    crc = crc32c::crc32c_append(crc, payload);
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    let mut v = h.to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn well_checksummed_nonsense_is_refused() {
    let hdr = crate::codec::encode_header(&sample_header());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "unknown kind",
            [preamble().to_vec(), frame(9, b"x")].concat(),
        ),
        (
            "pages before header",
            [preamble().to_vec(), frame(3, &[0; 8])].concat(),
        ),
        (
            "garbage header",
            [preamble().to_vec(), frame(1, &[0xff; 24])].concat(),
        ),
        (
            "two headers",
            [preamble().to_vec(), frame(1, &hdr), frame(1, &hdr)].concat(),
        ),
        (
            "page block overrun",
            [
                preamble().to_vec(),
                frame(1, &hdr),
                frame(3, &[200, 0, 0, 0, 1, 2]),
            ]
            .concat(),
        ),
        (
            "trailer counts wrong",
            [
                preamble().to_vec(),
                frame(1, &hdr),
                frame(0x7f, &crate::codec::encode_trailer(&Default::default())),
            ]
            .concat(),
        ),
    ];
    for (what, img) in cases {
        match read_all(&img) {
            Err(Error::Corrupt { .. }) => {}
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
    }
    let mut huge = preamble().to_vec();
    let mut h = frame(1, b"");
    h[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    huge.extend_from_slice(&h);
    assert!(matches!(read_all(&huge), Err(Error::Corrupt { .. })));
}

/// A frame header claiming the largest payload, followed by a few bytes: the reader
/// reports the truncation and never allocates more than the stream held plus one step.
#[test]
fn a_length_field_cannot_make_the_reader_allocate_what_the_image_lacks() {
    for claimed in [MAX_PAYLOAD, MAX_PAYLOAD / 2 + 3, 5 * PAYLOAD_STEP + 1] {
        let mut h = [0u8; FRAME_HEADER_LEN];
        h[0] = FrameKind::Header as u8;
        h[8..16].copy_from_slice(&claimed.to_le_bytes());
        let img = [preamble().to_vec(), h.to_vec(), vec![0xab; 100]].concat();
        let mut rd = ImageReader::new(&img[..], "crafted").expect("preamble");
        let mut buf = Vec::new();
        match rd.next_frame(&mut buf) {
            Err(Error::Truncated { .. }) => {}
            other => panic!("claimed {claimed}: expected Truncated, got {other:?}"),
        }
        assert!(
            buf.capacity() as u64 <= 2 * PAYLOAD_STEP,
            "claimed {claimed}: the reader allocated {} bytes for a 116-byte frame",
            buf.capacity()
        );
    }
}

/// Found by fuzzing (fuzz target `image`): a 2 KiB header whose tree list is a list of
/// zero-sized structs claiming ~60 million nodes made the decoder build them all (GBs).
/// It is refused as corrupt, quickly.
#[test]
fn fuzz_regression_a_header_claiming_millions_of_tree_nodes() {
    let img = include_bytes!("testdata/fuzz-header-60m-tree-nodes.spirit");
    let t = std::time::Instant::now();
    match read_all(img) {
        Err(Error::Corrupt { what, .. }) => assert!(what.contains("Header"), "{what}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}
