//! kernels/*.cu as NVRTC compiles them: each stem's source with
//! kernels/common.cuh inlined (NVRTC has no file system), compiled for the
//! device's architecture with `-lineinfo` and no fast math, cached in
//! memory and on disk under a hash of source, options and NVRTC version.

use std::path::PathBuf;

use crate::{Device, Error, Result};

const SOURCES: &[(&str, &str)] = &[
    ("adam", include_str!("../../../../../kernels/adam.cu")),
    ("attention", include_str!("../../../../../kernels/attention.cu")),
    ("batch_norm", include_str!("../../../../../kernels/batch_norm.cu")),
    ("conv2d", include_str!("../../../../../kernels/conv2d.cu")),
    ("copy", include_str!("../../../../../kernels/copy.cu")),
    ("elementwise", include_str!("../../../../../kernels/elementwise.cu")),
    ("index", include_str!("../../../../../kernels/index.cu")),
    ("matmul", include_str!("../../../../../kernels/matmul.cu")),
    ("pool", include_str!("../../../../../kernels/pool.cu")),
    ("reduce", include_str!("../../../../../kernels/reduce.cu")),
    ("softmax", include_str!("../../../../../kernels/softmax.cu")),
];
const COMMON: &str = include_str!("../../../../../kernels/common.cuh");

/// Every kernel file's stem (`kernels/<stem>.cu`), from the table above.
pub fn kernel_stems() -> impl Iterator<Item = &'static str> {
    SOURCES.iter().map(|(stem, _)| *stem)
}

/// The source NVRTC compiles for `stem` (common.cuh inlined). With
/// KILN_KERNELS_DIR set, the files are read from there instead, so kernels
/// can be edited without rebuilding the Rust code.
pub fn kernel_source(stem: &str) -> Option<String> {
    let (body, common) = match std::env::var("KILN_KERNELS_DIR") {
        Ok(dir) => {
            let dir = PathBuf::from(dir);
            (
                std::fs::read_to_string(dir.join(format!("{stem}.cu"))).ok()?,
                std::fs::read_to_string(dir.join("common.cuh")).ok()?,
            )
        }
        Err(_) => (SOURCES.iter().find(|(s, _)| *s == stem)?.1.to_string(), COMMON.to_string()),
    };
    Some(body.replace("#include \"common.cuh\"", &common))
}

/// Makes libnvrtc loadable: an absolute `KILN_NVRTC_LIB` (or a
/// `KILN_NVRTC_DIR` holding libnvrtc.so.12, e.g. from the
/// nvidia-cuda-nvrtc-cu12 wheel) is opened first; cudarc then finds it by
/// soname. Returns whether NVRTC is available.
pub fn nvrtc_available() -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(|| {
        let lib = std::env::var("KILN_NVRTC_LIB")
            .ok()
            .or_else(|| std::env::var("KILN_NVRTC_DIR").ok().map(|d| format!("{d}/libnvrtc.so.12")));
        if let Some(path) = lib {
            // Kept loaded for the process (glibc then resolves cudarc's dlopen by soname).
            if let Ok(l) = unsafe { libloading::Library::new(&path) } {
                std::mem::forget(l);
            }
        }
        unsafe { cudarc::nvrtc::sys::is_culib_present() }
    })
}

/// NVRTC's (major, minor) version.
pub fn nvrtc_version() -> Option<(i32, i32)> {
    if !nvrtc_available() {
        return None;
    }
    let (mut major, mut minor) = (0, 0);
    let r = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    (r == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS).then_some((major, minor))
}

fn arch_name(arch: (i32, i32)) -> &'static str {
    match arch {
        (7, 0) => "sm_70",
        (7, 5) => "sm_75",
        (8, 0) => "sm_80",
        (8, 6) => "sm_86",
        (8, 9) => "sm_89",
        (9, 0) => "sm_90",
        (10, 0) => "sm_100",
        (12, 0) => "sm_120",
        (major, minor) => Box::leak(format!("sm_{major}{minor}").into_boxed_str()),
    }
}

fn options() -> Vec<String> {
    vec!["-std=c++17".into(), "-lineinfo".into()]
}

/// FNV-1a: a stable hash for the on-disk cache key.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf29ce484222325u64;
    for p in parts {
        for &b in *p {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x100000001b3);
    }
    h
}

fn cache_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("KILN_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    std::env::var("HOME").ok().map(|h| PathBuf::from(h).join(".cache/kiln/ptx"))
}

/// PTX of one source (`file` names it in errors) for `arch` = (major, minor).
pub fn compile_source(file: &str, src: &str, arch: (i32, i32), device: Device) -> Result<String> {
    let err = |msg: String| Error::Backend { device, msg };
    if !nvrtc_available() {
        return Err(err("NVRTC (libnvrtc.so) not found: set KILN_NVRTC_DIR or LD_LIBRARY_PATH".into()));
    }
    let name = arch_name(arch);
    let opts = cudarc::nvrtc::CompileOptions {
        arch: Some(name),
        name: Some(file.to_string()),
        options: options(),
        ..Default::default()
    };
    match cudarc::nvrtc::compile_ptx_with_opts(src, opts) {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(cudarc::nvrtc::CompileError::CompileError { log, .. }) => {
            Err(err(format!("NVRTC failed on kernels/{file} for {name}:\n{}", log.to_string_lossy())))
        }
        Err(other) => Err(err(format!("NVRTC failed on kernels/{file} for {name}: {other:?}"))),
    }
}

/// PTX for `stem` on `arch` = (major, minor); from the disk cache when the
/// same source, options and NVRTC version were compiled before.
pub fn compile(stem: &str, arch: (i32, i32), device: Device) -> Result<String> {
    let err = |msg: String| Error::Backend { device, msg };
    if !nvrtc_available() {
        return Err(err("NVRTC (libnvrtc.so) not found: set KILN_NVRTC_DIR or LD_LIBRARY_PATH".into()));
    }
    let src = kernel_source(stem).ok_or_else(|| err(format!("no kernel file kernels/{stem}.cu")))?;
    let name = arch_name(arch);
    let opts = options();
    let version = format!("{:?}", nvrtc_version());
    let key = fnv1a(&[src.as_bytes(), name.as_bytes(), opts.join(" ").as_bytes(), version.as_bytes()]);
    let cached = cache_dir().map(|d| d.join(format!("{stem}-{name}-{key:016x}.ptx")));
    if let Some(ptx) = cached.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
        return Ok(ptx);
    }
    let ptx = compile_source(&format!("{stem}.cu"), &src, arch, device)?;
    if let Some(path) = cached {
        // Best effort: a cache write failure only costs a recompile; written
        // under a temporary name and renamed so readers never see half a file.
        if let Some(dir) = path.parent()
            && std::fs::create_dir_all(dir).is_ok()
        {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, &ptx).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
    }
    Ok(ptx)
}
