//! `cargo xtask bench [--compare torch]`: runs the criterion benches, the
//! FMA peak probe and (optionally) the same shapes in PyTorch, all in one
//! run, and writes BENCHMARKS.md: time, GFLOP/s, % of measured peak, the
//! ratio to PyTorch and the accuracy against the f64 oracle.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const BENCHES: &[&str] = &[
    "matmul",
    "conv2d",
    "conv_transpose2d",
    "batch_norm",
    "attention",
    "dcgan_step",
    "gan_critic_step",
    "vae_step",
    "group_norm",
    "unet_step",
    "glow_step",
    "realnvp_step",
];

/// Runs a benchmark process (with the shared malloc settings) and returns
/// its stdout, or an error carrying the command and its stderr.
fn stdout_of(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.envs(crate::malloc_env()).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn cargo_bench(name: &str) -> Result<String, String> {
    eprintln!("+ cargo bench --bench {name}");
    stdout_of(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["bench", "--quiet", "--bench", name]),
    )
}

/// (full id → (best seconds per call, FLOPs per call)) from criterion's JSON:
/// the fastest sample, as the shared machine's noise only ever adds time.
fn criterion_results(dir: &Path, out: &mut BTreeMap<String, (f64, Option<f64>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && p.file_name().is_some_and(|n| n == "new") {
            let read =
                |f: &str| std::fs::read_to_string(p.join(f)).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok());
            if let (Some(b), Some(sample)) = (read("benchmark.json"), read("sample.json")) {
                let id = b["full_id"].as_str().unwrap_or_default().to_string();
                let nums = |k: &str| {
                    sample[k]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
                        .unwrap_or_default()
                };
                let best =
                    nums("times").iter().zip(nums("iters")).map(|(t, n)| t / n / 1e9).fold(f64::INFINITY, f64::min);
                let flops = b["throughput"]["Elements"].as_f64();
                out.insert(id, (best, flops));
            }
        } else if p.is_dir() {
            criterion_results(&p, out);
        }
    }
}

/// The DCGAN step ratio measured in interleaved rounds (kiln's
/// examples/dcgan_steps, then PyTorch's step, `ROUNDS` times, best of
/// `STEPS` steps each): the machine's clock drifts over the minutes of a
/// full run, and alternating short runs keeps that drift out of the ratio.
/// Returns the per-round (kiln, PyTorch) seconds; the example must be built.
fn interleaved_step(size: usize) -> Result<Vec<(f64, f64)>, String> {
    const ROUNDS: usize = 5;
    const STEPS: usize = 5;
    let (size_arg, steps_arg) = (size.to_string(), STEPS.to_string());
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        eprintln!("+ interleaved DCGAN step {size}x{size}, round {}/{ROUNDS}", round + 1);
        let kiln = stdout_of(Command::new("target/release/examples/dcgan_steps").args([&steps_arg, &size_arg]))?;
        // "best 812.3 ms median ..."
        let kiln_ms: f64 = kiln
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("unexpected dcgan_steps output: {kiln}"))?;
        let torch =
            stdout_of(Command::new("python3").args(["scripts/bench_torch.py", "--dcgan-step", &size_arg, &steps_arg]))?;
        let torch: BTreeMap<String, f64> = serde_json::from_str(&torch).map_err(|e| e.to_string())?;
        let torch_s = *torch.values().next().ok_or("no PyTorch step time")?;
        rounds.push((kiln_ms / 1e3, torch_s));
    }
    Ok(rounds)
}

/// "group/cpu/variant/shape" → "group/shape" (the PyTorch script's key).
fn torch_key(id: &str) -> String {
    let parts: Vec<&str> = id.split('/').collect();
    match parts.as_slice() {
        [group, _, _, shape] => format!("{group}/{shape}"),
        [group, _, shape] => format!("{group}/{}", shape.trim_start_matches("default/")),
        _ => id.to_string(),
    }
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

pub fn run(compare_torch: bool) -> Result<(), String> {
    let peak_text = cargo_bench("peak")?;
    let peak: f64 = peak_text
        .lines()
        .find_map(|l| l.strip_prefix("peak_fma: ")?.split_whitespace().next()?.parse().ok())
        .ok_or("the peak probe printed no result")?;
    let mut accuracy = BTreeMap::new();
    let _ = std::fs::remove_dir_all("target/criterion");
    for b in BENCHES {
        for l in cargo_bench(b)?.lines() {
            if let Some((id, err)) = l.strip_prefix("accuracy ").and_then(|rest| rest.split_once(": ")) {
                accuracy.insert(id.to_string(), err.rsplit(' ').next().unwrap_or("").to_string());
            }
        }
    }
    let mut results = BTreeMap::new();
    criterion_results(Path::new("target/criterion"), &mut results);
    let torch: BTreeMap<String, f64> = if compare_torch {
        eprintln!("+ python3 scripts/bench_torch.py");
        let out = stdout_of(Command::new("python3").arg("scripts/bench_torch.py"))
            .map_err(|e| format!("{e}\n(is torch installed?)"))?;
        serde_json::from_str(&out).map_err(|e| e.to_string())?
    } else {
        BTreeMap::new()
    };
    let mut md = String::from("# kiln benchmarks\n\n");
    md += &format!(
        "Machine: {} ({} threads). Measured FMA peak (f32): **{peak:.0} GFLOP/s** (`cargo bench --bench peak`).\n\
         Produced by `cargo xtask bench{}` in one run; op times on both sides (PyTorch {}, 2 threads) are\n\
         criterion's estimate: the best time per call of 10 samples of d, 2d, …, 10d calls (`scripts/bench_torch.py`\n\
         samples PyTorch the same way), except PyTorch's DCGAN step, its best single step (which favours it;\n\
         the interleaved rounds compare best single steps on both sides). On a shared machine noise only\n\
         adds time, so the minimum is the stable estimate. Ratios below 1 mean kiln is faster. Accuracy: max |f32 − f64| /\n\
         max |f64| of the same op on the same values (the f64 CPU path is the oracle). GFLOP/s counts a\n\
         convolution's direct FLOPs; `winograd_f2x2_3x3` rows do 2.25× fewer multiply-adds in their GEMMs and\n\
         `winograd_f2x2_2x2` rows 1.78× fewer, so their GFLOP/s and % of peak are effective rates, not the\n\
         kernel's efficiency. `matmul_kernel` rows time the GEMM's micro-kernel alone on cache-resident\n\
         packed panels, on every thread at once: the ceiling the GEMM rows' kernel time runs at. Both processes run\n\
         with glibc's `MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296` (freed tensors\n\
         stay in the heap; `kiln-train` is started with the same settings).\n\n",
        cpu_name(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        if compare_torch { " --compare torch" } else { "" },
        if compare_torch { "CPU" } else { "not run" },
    );
    // The number users quote: one full DCGAN training step (D and G, Adam, BCE).
    // (Largest image first: ids sort n64_s32 before n64_s64.)
    for (id, (secs, _)) in results.iter().rev().filter(|(id, _)| id.starts_with("dcgan_step/cpu/")) {
        let vs = torch
            .get(&torch_key(id))
            .map_or(String::new(), |t| format!(" vs PyTorch {:.0} ms: **{:.2}×**", t * 1e3, secs / t));
        md += &format!("**`{id}`** (batch 64): kiln {:.0} ms{vs}\n\n", secs * 1e3);
    }
    if compare_torch {
        eprintln!("+ cargo build --release --example dcgan_steps");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "--quiet", "--release", "--example", "dcgan_steps"])
            .status()
            .map_err(|e| e.to_string())?;
        if !built.success() {
            return Err("building examples/dcgan_steps failed".into());
        }
        for size in [64, 32] {
            let rounds = interleaved_step(size)?;
            let mut ratios: Vec<f64> = rounds.iter().map(|(k, t)| k / t).collect();
            let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            ratios.sort_by(f64::total_cmp);
            md += &format!(
                "Interleaved (`examples/dcgan_steps` then PyTorch's step, {} rounds, best of 5 steps each) at {size}×{size}: \
                 ratios {}; median **{:.2}×**.\n\n",
                rounds.len(),
                listed.join(", "),
                ratios[ratios.len() / 2]
            );
        }
    }
    md += "| bench | kiln ms | kiln GFLOP/s | % of peak | PyTorch ms | kiln / PyTorch | accuracy |\n|---|---:|---:|---:|---:|---:|---|\n";
    for (id, (secs, flops)) in results.iter().filter(|(id, _)| !id.contains("/wgpu/") && !id.contains("/cuda/")) {
        let gflops = flops.map(|f| f / secs / 1e9);
        let t = torch.get(&torch_key(id));
        let acc_key = torch_key(id).replace("_fwd_bwd/", "_fwd/");
        md += &format!(
            "| `{id}` | {:.2} | {} | {} | {} | {} | {} |\n",
            secs * 1e3,
            gflops.map_or("—".into(), |g| format!("{g:.1}")),
            gflops.map_or("—".into(), |g| format!("{:.0}%", 100.0 * g / peak)),
            t.map_or("—".into(), |t| format!("{:.2}", t * 1e3)),
            t.map_or("—".into(), |t| format!("**{:.2}×**", secs / t)),
            accuracy.get(&acc_key).cloned().unwrap_or_else(|| "—".into()),
        );
    }
    let gpu: Vec<_> = results.iter().filter(|(id, _)| id.contains("/wgpu/") || id.contains("/cuda/")).collect();
    if !gpu.is_empty() {
        md += "\n## GPU backends\n\nThe same shapes on the CUDA and wgpu backends. On a software wgpu adapter (lavapipe: what CI\n\
               and these machines have) the numbers only prove the path runs; they say nothing about GPU speed.\n\n\
               | bench | ms | GFLOP/s |\n|---|---:|---:|\n";
        for (id, (secs, flops)) in gpu {
            let g = flops.map_or("—".into(), |f| format!("{:.1}", f / secs / 1e9));
            md += &format!("| `{id}` | {:.2} | {g} |\n", secs * 1e3);
        }
    }
    std::fs::write("BENCHMARKS.md", &md).map_err(|e| e.to_string())?;
    println!("{md}");
    Ok(())
}
