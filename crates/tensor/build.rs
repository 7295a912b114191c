//! With the `cuda-emulation` feature, compiles every kernels/*.cu with the
//! C++ compiler against kernels/emu/cuda_emu.h (one translation unit,
//! kernels/emu/glue.cpp), so the CUDA backend's kernels run on the CPU.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "cuda-emulation")]
    emulation();
}

#[cfg(feature = "cuda-emulation")]
fn emulation() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernels");
    for entry in std::fs::read_dir(&dir).expect("kernels/").chain(std::fs::read_dir(dir.join("emu")).expect("emu/")) {
        println!("cargo:rerun-if-changed={}", entry.expect("dir entry").path().display());
    }
    cc::Build::new()
        .cpp(true)
        .file(dir.join("emu/glue.cpp"))
        .include(&dir)
        .std("c++20")
        // Optimised even in debug builds: the emulated kernels are the slow part of the tests.
        .opt_level(2)
        .flag("-pthread")
        .warnings(false)
        .compile("kiln_cuda_emu");
}
