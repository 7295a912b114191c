//! `cargo xtask <command>`: thin wrappers around cargo so the common jobs
//! are one memorable command. Training always runs release-built code.

mod bench;
mod kernels;

use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test            run the whole test suite (cargo test --workspace)
  ci              what CI runs: fmt check, clippy -D warnings, the tests
  train <model>   train a model (release build); `cargo xtask train --help`
                  lists the models, `cargo xtask train dcgan --help` its flags
  sample <model>  sample a trained run: `cargo xtask sample dcgan --checkpoint RUN`
  eval RUN        FID, classifier score and modes of 1,000 samples of a run, and its
                  held-out numbers, into RUN/eval.json; `eval --images PNGS` scores
                  any folder of PNGs or PNG grid with the same classifier
  export-classifier RUN
                  write a `train classifier` run as the classifier eval uses
  data mnist --out DIR
                  download the full MNIST (70,000 digits) with SHA-256 checks
  bench [--compare torch]
                  run every criterion bench (+ PyTorch on the same shapes) and
                  write BENCHMARKS.md
  kernels check   validate every shaders/*.wgsl with naga and compile every
                  kernels/*.cu with NVRTC for sm_80 and sm_90 (no GPU needed;
                  NVRTC from KILN_NVRTC_DIR or LD_LIBRARY_PATH)
  gpu-check       on a machine with an NVIDIA GPU: every CUDA parity test,
                  gradient check and DCGAN step on the real device, then the
                  criterion benches (their cuda rows)";

fn cargo(args: &[&str]) -> bool {
    cargo_with_env(args, &[])
}

fn cargo_with_env(args: &[&str], env: &[(&str, &str)]) -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("+ cargo {}", args.join(" "));
    Command::new(cargo).args(args).envs(env.iter().copied()).status().is_ok_and(|s| s.success())
}

/// glibc malloc settings for long numeric runs: freed blocks up to 32 MB
/// stay in the heap instead of going back to the kernel, so a fresh
/// multi-MB tensor reuses pages instead of faulting them in again. That was
/// ~10% of a CPU DCGAN step. Set for kiln-train and for both sides of
/// `xtask bench` (PyTorch gains ~6% from it too). Other C libraries ignore
/// these variables, and a value already set in the environment wins.
pub fn malloc_env() -> Vec<(&'static str, &'static str)> {
    [("MALLOC_MMAP_THRESHOLD_", "33554432"), ("MALLOC_TRIM_THRESHOLD_", "4294967296")]
        .into_iter()
        .filter(|(k, _)| std::env::var_os(k).is_none())
        .collect()
}

fn report(r: Result<(), String>) -> bool {
    r.map_err(|e| eprintln!("xtask bench: {e}")).is_ok()
}

/// The CUDA tests on the real GPU (not the CPU emulation), then the benches.
fn gpu_check() -> bool {
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tests = Command::new(&cargo_bin)
        .args(["test", "-p", "kiln", "--test", "main", "--", "cuda"])
        .env("KILN_TEST_CUDA", "gpu")
        .env("KILN_REQUIRE_CUDA", "1")
        .env("KILN_REQUIRE_NVRTC", "1")
        .status()
        .is_ok_and(|s| s.success());
    tests && report(bench::run(false))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ok = match args.as_slice() {
        ["test", rest @ ..] => cargo(&[&["test", "--workspace"], rest].concat()),
        ["ci"] => {
            cargo(&["fmt", "--all", "--", "--check"])
                && cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])
                && cargo(&["test", "--workspace"])
        }
        ["train" | "sample" | "eval" | "export-classifier" | "data", ..] => {
            // Release build: training never runs unoptimised code.
            let run = [&["run", "--release", "--quiet", "--package", "kiln-train", "--"], &args[..]].concat();
            cargo_with_env(&run, &malloc_env())
        }
        ["bench"] => report(bench::run(false)),
        ["bench", "--compare", "torch"] => report(bench::run(true)),
        ["kernels", "check"] => {
            kernels::check().map_err(|e| eprintln!("xtask kernels check: {e}")).is_ok()
                // NVRTC compiles every kernel (the test fails loudly when
                // KILN_REQUIRE_NVRTC=1 and no libnvrtc is found).
                && cargo(&["test", "-p", "kiln", "--test", "main", "--", "cuda_kernels"])
        }
        ["gpu-check"] => gpu_check(),
        _ => {
            eprintln!("{USAGE}");
            false
        }
    };
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
