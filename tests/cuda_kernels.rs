//! The CUDA sources themselves: NVRTC compiles every kernels/*.cu for sm_80
//! and sm_90 (CI installs NVRTC from the nvidia-cuda-nvrtc-cu12 wheel), the
//! compiled entry points are exactly those the CPU-emulated build runs, a
//! broken kernel is an error naming the file with NVRTC's log, and ptxas
//! (nvidia-cuda-nvcc-cu12) finds no register spills for sm_90.

use std::collections::BTreeSet;

use kiln::Device;
use kiln::tensor::cuda;

/// None (after a SKIP line) when libnvrtc cannot be loaded, unless
/// KILN_REQUIRE_NVRTC=1 (CI) makes that a failure.
fn nvrtc() -> Option<()> {
    if cuda::nvrtc_available() {
        return Some(());
    }
    assert!(
        !std::env::var("KILN_REQUIRE_NVRTC").is_ok_and(|v| v == "1"),
        "KILN_REQUIRE_NVRTC=1 but libnvrtc was not found (KILN_NVRTC_DIR / LD_LIBRARY_PATH)"
    );
    eprintln!("SKIP NVRTC test: libnvrtc not found (set KILN_NVRTC_DIR)");
    None
}

fn entries(ptx: &str) -> impl Iterator<Item = String> + '_ {
    ptx.lines().filter_map(|l| l.split(".entry ").nth(1)).map(|r| r.trim_end_matches('(').trim().to_string())
}

#[test]
fn every_kernel_compiles_with_nvrtc_for_sm80_and_sm90() {
    let Some(()) = nvrtc() else { return };
    eprintln!("NVRTC {:?}", cuda::nvrtc_version());
    for arch in [(8, 0), (9, 0)] {
        let mut compiled = BTreeSet::new();
        for stem in cuda::kernel_stems() {
            // compile_source: always a real NVRTC run (compile() may hit the disk cache).
            let src = cuda::kernel_source(stem).unwrap();
            let ptx = cuda::compile_source(&format!("{stem}.cu"), &src, arch, Device::Cuda(0))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(ptx.contains(&format!(".target sm_{}{}", arch.0, arch.1)), "{stem}: wrong target");
            let names: Vec<String> = entries(&ptx).collect();
            assert!(!names.is_empty(), "kernels/{stem}.cu has no entry point");
            for n in names {
                assert!(n.starts_with(stem) || stem == "pool" || stem == "index", "{n} in {stem}.cu");
                compiled.insert(n);
            }
        }
        let emulated: BTreeSet<String> = cuda::emulated_entries().into_iter().collect();
        assert_eq!(compiled, emulated, "NVRTC's entry points and the emulated build's (kernels/emu/glue.cpp) differ");
    }
}

#[test]
fn cached_ptx_equals_a_fresh_compile() {
    let Some(()) = nvrtc() else { return };
    // `-lineinfo` records the compiling process's directory in `.file`
    // lines: a cache filled from another checkout differs only there.
    let code =
        |ptx: String| ptx.lines().filter(|l| !l.trim_start().starts_with(".file")).collect::<Vec<_>>().join("\n");
    let fresh = cuda::compile_source("softmax.cu", &cuda::kernel_source("softmax").unwrap(), (8, 0), Device::Cuda(0));
    let first = cuda::compile("softmax", (8, 0), Device::Cuda(0)).unwrap();
    let again = cuda::compile("softmax", (8, 0), Device::Cuda(0)).unwrap();
    assert_eq!(code(fresh.unwrap()), code(first.clone()));
    assert_eq!(first, again);
}

#[test]
fn the_reductions_compile_to_warp_shuffles() {
    let Some(()) = nvrtc() else { return };
    let ptx = cuda::compile("reduce", (9, 0), Device::Cuda(0)).unwrap();
    assert!(ptx.contains("shfl.sync.bfly"), "reduce_rows should use warp shuffles");
    let ptx = cuda::compile("batch_norm", (9, 0), Device::Cuda(0)).unwrap();
    assert!(ptx.contains("shfl.sync.bfly") && ptx.contains("bar.sync"));
}

#[test]
fn a_broken_kernel_is_an_error_naming_the_file() {
    let Some(()) = nvrtc() else { return };
    let src = cuda::kernel_source("adam").unwrap().replace("sqrtf(v[i])", "sqrtf(undefined_name)");
    let e = cuda::compile_source("adam.cu", &src, (9, 0), Device::Cuda(0)).unwrap_err().to_string();
    assert!(e.contains("adam.cu") && e.contains("undefined_name"), "{e}");
}

#[test]
fn emulated_and_nvrtc_sources_are_the_same_files() {
    // NVRTC gets common.cuh inlined; nothing else differs from kernels/.
    for stem in cuda::kernel_stems() {
        let src = cuda::kernel_source(stem).unwrap();
        let file = std::fs::read_to_string(format!("{}/kernels/{stem}.cu", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let common = std::fs::read_to_string(format!("{}/kernels/common.cuh", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(src, file.replace("#include \"common.cuh\"", &common), "{stem}");
        assert!(!file.contains("#include <"), "kernels/{stem}.cu must not include system headers");
    }
}

/// ptxas from the nvidia-cuda-nvcc-cu12 wheel (KILN_PTXAS = its path), or
/// None after a SKIP line unless KILN_REQUIRE_PTXAS=1.
fn ptxas() -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var("KILN_PTXAS")
        && std::path::Path::new(&p).exists()
    {
        return Some(p.into());
    }
    assert!(
        !std::env::var("KILN_REQUIRE_PTXAS").is_ok_and(|v| v == "1"),
        "KILN_REQUIRE_PTXAS=1 but KILN_PTXAS is unset"
    );
    eprintln!("SKIP ptxas report: set KILN_PTXAS to a ptxas binary");
    None
}

/// (entry, registers, stack bytes, spill-store bytes) from `ptxas -v`.
fn ptxas_report(ptxas: &std::path::Path, stem: &str, ptx: &str) -> Vec<(String, u32, u32, u32)> {
    let path = std::env::temp_dir().join(format!("kiln-{}-{stem}.ptx", std::process::id()));
    std::fs::write(&path, ptx).unwrap();
    let out =
        std::process::Command::new(ptxas).args(["-arch=sm_90", "-v", "-o", "/dev/null"]).arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "ptxas failed on {stem}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stderr);
    let num = |s: &str, before: &str| -> u32 {
        s.split(before).next().and_then(|h| h.split_whitespace().last()).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    let mut rows = vec![];
    let (mut name, mut stack, mut spill) = (String::new(), 0, 0);
    for line in text.lines() {
        if let Some(r) = line.split("Compiling entry function '").nth(1) {
            name = r.split('\'').next().unwrap_or_default().to_string();
        } else if line.contains("bytes stack frame") {
            (stack, spill) = (num(line, " bytes stack frame"), num(line, " bytes spill stores"));
        } else if line.contains("Used ") && line.contains(" registers") {
            rows.push((name.clone(), num(line, " registers"), stack, spill));
        }
    }
    rows
}

#[test]
fn ptxas_reports_no_spills_for_sm90() {
    let (Some(()), Some(ptxas)) = (nvrtc(), ptxas()) else { return };
    let mut all = vec![];
    for stem in cuda::kernel_stems() {
        let ptx =
            cuda::compile_source(&format!("{stem}.cu"), &cuda::kernel_source(stem).unwrap(), (9, 0), Device::Cuda(0))
                .unwrap();
        all.extend(ptxas_report(&ptxas, stem, &ptx));
    }
    eprintln!("{:<28} {:>5} {:>7} {:>7}", "sm_90 entry", "regs", "stack", "spills");
    for (n, r, st, sp) in &all {
        eprintln!("{n:<28} {r:>5} {st:>7} {sp:>7}");
    }
    assert_eq!(all.len(), cuda::emulated_entries().len(), "one ptxas row per entry point");
    for (n, _, st, sp) in &all {
        assert_eq!(*sp, 0, "{n} spills registers");
        // Only attention keeps per-row arrays (q, accumulators) in local memory.
        assert!(n.starts_with("attention") || *st <= 64, "{n} uses a {st}-byte stack frame");
    }
}
