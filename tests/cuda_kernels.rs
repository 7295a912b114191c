//! The CUDA sources themselves: NVRTC compiles every kernels/*.cu for sm_80
//! and sm_90 (CI installs NVRTC from the nvidia-cuda-nvrtc-cu12 wheel), the
//! compiled entry points are exactly those the CPU-emulated build runs, and
//! a broken kernel is an error naming the file with NVRTC's log.

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
        for stem in cuda::KERNEL_STEMS {
            // compile_source: always a real NVRTC run (compile() may hit the disk cache).
            let src = cuda::kernel_source(stem).unwrap();
            let ptx = cuda::compile_source(&format!("{stem}.cu"), &src, arch, Device::Cuda(0))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(ptx.contains(&format!(".target sm_{}{}", arch.0, arch.1)), "{stem}: wrong target");
            let names: Vec<String> = entries(&ptx).collect();
            assert!(!names.is_empty(), "kernels/{stem}.cu has no entry point");
            for n in names {
                assert!(n.starts_with(stem) || stem == &"pool" || stem == &"index", "{n} in {stem}.cu");
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
    let fresh = cuda::compile_source("softmax.cu", &cuda::kernel_source("softmax").unwrap(), (8, 0), Device::Cuda(0));
    let first = cuda::compile("softmax", (8, 0), Device::Cuda(0)).unwrap();
    let again = cuda::compile("softmax", (8, 0), Device::Cuda(0)).unwrap();
    assert_eq!(fresh.unwrap(), first);
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
    for stem in cuda::KERNEL_STEMS {
        let src = cuda::kernel_source(stem).unwrap();
        let file = std::fs::read_to_string(format!("{}/kernels/{stem}.cu", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let common = std::fs::read_to_string(format!("{}/kernels/common.cuh", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(src, file.replace("#include \"common.cuh\"", &common), "{stem}");
        assert!(!file.contains("#include <"), "kernels/{stem}.cu must not include system headers");
    }
}
