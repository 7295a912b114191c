//! `cargo xtask <command>`: thin wrappers around cargo so the common jobs
//! are one memorable command. Training always runs release-built code.

mod bench;
mod kernels;

use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test            run the whole test suite (cargo test --workspace)
  ci              what CI runs: fmt check, clippy -D warnings, the tests
  train <model>   train a model (release build): `cargo xtask train dcgan --help`
  sample <model>  sample a trained run: `cargo xtask sample dcgan --checkpoint RUN`
  data mnist --out DIR
                  download the full MNIST (70,000 digits) with SHA-256 checks
  data mnist --out DIR
                  download the full MNIST (70,000 digits) with SHA-256 checks
  bench [--compare torch]
                  run every criterion bench (+ PyTorch on the same shapes) and
                  write BENCHMARKS.md
  kernels check   validate every shaders/*.wgsl with naga (no GPU needed);
                  CUDA kernels join with the CUDA backend issue";

fn cargo(args: &[&str]) -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("+ cargo {}", args.join(" "));
    Command::new(cargo).args(args).status().is_ok_and(|s| s.success())
}

fn report(r: Result<(), String>) -> bool {
    r.map_err(|e| eprintln!("xtask bench: {e}")).is_ok()
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
        ["train" | "sample" | "data", ..] => {
            // Release build: training never runs unoptimised code.
            cargo(&[&["run", "--release", "--quiet", "--package", "kiln-train", "--"], &args[..]].concat())
        }
        ["bench"] => report(bench::run(false)),
        ["bench", "--compare", "torch"] => report(bench::run(true)),
        ["kernels", "check"] => kernels::check().map_err(|e| eprintln!("xtask kernels check: {e}")).is_ok(),
        _ => {
            eprintln!("{USAGE}");
            false
        }
    };
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
