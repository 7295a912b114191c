//! The `kiln-train` command line: every bad flag value is an error naming
//! the flag (before anything is written), and SIGTERM stops a run like
//! Ctrl-C, with a checkpoint of the last finished step.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches};
use kiln_gan::Dcgan;
use kiln_train::cli::{Cli, given_flags};

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Parses and runs `args` in process; the error text, or None on success.
fn run(args: &[&str]) -> Option<String> {
    let matches = match Cli::command().try_get_matches_from(std::iter::once("kiln-train").chain(args.iter().copied())) {
        Ok(m) => m,
        Err(e) => return Some(e.to_string()),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap();
    kiln_train::registry::run(cli.command, given_flags(&matches), &AtomicBool::new(false)).err().map(|e| e.to_string())
}

const TINY: [(&str, &str); 9] = [
    ("--device", "cpu"),
    ("--image-size", "16"),
    ("--ngf", "4"),
    ("--ndf", "4"),
    ("--batch", "8"),
    ("--steps", "1"),
    ("--sample-every", "0"),
    ("--checkpoint-every", "0"),
    ("--eval-n", "50"),
];

/// `train dcgan` with the tiny settings, `flag value` replacing its own.
fn train_args(out: &Path, flag: &str, value: &str) -> Vec<String> {
    let mut args = vec!["train".to_string(), "dcgan".into(), "--quiet".into()];
    for (f, v) in TINY.iter().filter(|(f, _)| *f != flag) {
        args.extend([f.to_string(), v.to_string()]);
    }
    if flag != "--out" {
        args.extend(["--out".into(), out.display().to_string()]);
    }
    args.extend([flag.to_string(), value.to_string()]);
    args
}

#[test]
fn every_bad_flag_value_is_an_error_naming_the_flag() {
    let out = scratch("bad-flags");
    let cases = [
        ("--steps", "0"),
        ("--steps", "-1"),
        ("--epochs", "0"),
        ("--batch", "0"),
        ("--batch", "-5"),
        ("--batch", "100000"),
        ("--channels", "2"),
        ("--seed", "-1"),
        ("--sample-every", "-1"),
        ("--checkpoint-every", "x"),
        ("--eval-every", "-1"),
        ("--eval-n", "1"),
        ("--lr", "-1"),
        ("--lr", "0"),
        ("--lr", "nan"),
        ("--beta1", "1.5"),
        ("--real-label", "2"),
        ("--nz", "0"),
        ("--ngf", "0"),
        ("--ndf", "5000"),
        ("--image-size", "24"),
        ("--image-size", "65536"),
        ("--beta2", "1"),
        ("--loss", "wgan"),
        ("--n-critic", "101"),
        ("--gp-lambda", "-1"),
        ("--r1", "nan"),
        ("--d-norm", "group"),
        ("--self-attention", "12"),
        ("--self-attention", "16"),
        ("--lr-d", "-1"),
        ("--lr-g", "nan"),
        ("--ema", "1"),
        ("--device", "tpu"),
        ("--data", "/nonexistent"),
        ("--out", "/proc/version/run"),
        ("--resume", "/nonexistent"),
    ];
    for (flag, value) in cases {
        let args = train_args(&out, flag, value);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = run(&args).unwrap_or_else(|| panic!("{flag} {value} was accepted"));
        let named = e.contains(flag) || (flag == "--resume" && e.contains("/nonexistent/config.json"));
        assert!(named, "{flag} {value}: the error does not name the flag: {e}");
        assert!(!out.exists(), "{flag} {value}: a failed command left a folder");
    }
    // The VAE's own flags.
    for (flag, value) in [
        ("--latent", "0"),
        ("--width", "0"),
        ("--hidden", "200000"),
        ("--iwae-k", "0"),
        ("--image-size", "30"),
        ("--likelihood", "poisson"),
        ("--sigma", "-1"),
        ("--beta", "-1"),
        ("--free-bits", "-0.5"),
        ("--lr", "0"),
    ] {
        let o = out.display().to_string();
        let args = ["train", "vae", "--quiet", "--device", "cpu", "--steps", "1", "--out", &o, flag, value];
        let e = run(&args).unwrap_or_else(|| panic!("vae {flag} {value} was accepted"));
        assert!(e.contains(flag), "vae {flag} {value}: the error does not name the flag: {e}");
        assert!(!out.exists(), "vae {flag} {value}: a failed command left a folder");
    }
    // Zero means never: a run with --sample-every 0 --checkpoint-every 0 finishes.
    assert_eq!(run(&train_args(&out, "--steps", "2").iter().map(String::as_str).collect::<Vec<_>>()), None);
    assert!(out.join("checkpoint.safetensors").exists() && out.join("samples/final.png").exists());
    assert!(!out.join("samples/step-000002.png").exists());
}

#[test]
fn sample_checks_its_flags_and_refuses_a_non_finite_checkpoint() {
    let out = scratch("sample");
    let args = train_args(&out, "--steps", "2");
    assert_eq!(run(&args.iter().map(String::as_str).collect::<Vec<_>>()), None);
    let run_dir = out.display().to_string();
    let grid = out.join("grid.png").display().to_string();
    let jpg = out.join("grid.jpg").display().to_string();
    assert_eq!(run(&["sample", "dcgan", "--checkpoint", &run_dir, "--n", "10", "--out", &grid]), None);
    assert!(out.join("grid.png").exists());
    let e = run(&["sample", "dcgan", "--checkpoint", &run_dir, "--out", &jpg]).unwrap();
    assert!(e.starts_with("--out") && e.contains("PNG"), "{e}");
    let e = run(&["sample", "dcgan", "--checkpoint", &run_dir, "--n", "0", "--out", &grid]).unwrap();
    assert!(e.starts_with("--n 0"), "{e}");
    // eval: the run (eval.json), a grid of PNGs, and its flag checks.
    assert_eq!(run(&["eval", &run_dir, "--n", "20"]), None);
    let report = std::fs::read_to_string(out.join("eval.json")).unwrap();
    assert!(report.contains("\"fid\"") && report.contains("\"n\": 20"), "{report}");
    assert_eq!(run(&["eval", "--images", &grid, "--n", "10"]), None);
    assert!(run(&["eval", &run_dir, "--n", "1"]).unwrap().starts_with("--n 1"));
    assert!(run(&["eval", "--images", &grid, "--nrow", "7"]).unwrap().contains("7 tiles a row"));
    assert!(run(&["eval"]).unwrap().contains("<RUN>"));
    assert!(run(&["eval", "/nonexistent"]).unwrap().contains("/nonexistent/config.json"));
    // A checkpoint with an inf in it (written behind kiln's back).
    let path = out.join("checkpoint.safetensors");
    let ck = kiln_nn::load_checkpoint(&path).unwrap();
    let mut tensors: Vec<(String, kiln_tensor::Tensor)> = ck.tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let (name, t) = tensors.iter_mut().find(|(n, _)| n.ends_with("running_var")).unwrap();
    let mut v = t.to_vec::<f32>().unwrap();
    v[0] = f32::INFINITY;
    *t = kiln_tensor::Tensor::from_vec(v, t.shape(), kiln_tensor::Device::Cpu).unwrap();
    let name = name.clone();
    kiln_nn::save_checkpoint(&path, &tensors, &ck.metadata).unwrap();
    let e = run(&["sample", "dcgan", "--checkpoint", &run_dir, "--out", &grid]).unwrap();
    assert!(e.contains(&name) && e.contains("not finite"), "{e}");
    // A run of another model is named as such.
    let e = kiln_train::load_run::<Dcgan>(Path::new("/nonexistent"), kiln_tensor::Device::Cpu).err().unwrap();
    assert!(e.to_string().contains("/nonexistent/config.json"), "{e}");
}

#[test]
fn sigterm_stops_after_the_step_with_a_checkpoint() {
    let out = scratch("sigterm");
    let mut args = train_args(&out, "--steps", "1000000");
    args.retain(|a| a != "--quiet");
    let child = Command::new(env!("CARGO_BIN_EXE_kiln-train"))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = out.join("metrics.csv");
    let t0 = Instant::now();
    while std::fs::read_to_string(&metrics).map(|t| t.lines().count()).unwrap_or(0) < 4 {
        assert!(t0.elapsed() < Duration::from_secs(120), "the run did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Twice at once, as `timeout` signals the command and its process group:
    // still one stop request. The shell's builtin kill: procps (/bin/kill)
    // is not on every machine.
    let twice = format!("kill -TERM {0}; kill -TERM {0}", child.id());
    let kill = Command::new("sh").args(["-c", &twice]).status().unwrap();
    assert!(kill.success());
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{:?}: {stderr}", done.status);
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
    let (_, _, step) = kiln_train::load_run::<Dcgan>(&out, kiln_tensor::Device::Cpu).unwrap();
    let rows = std::fs::read_to_string(&metrics).unwrap().lines().count() - 1;
    assert!(step >= 3 && step == rows, "checkpoint at step {step}, metrics has {rows} steps");
}

/// A DDPM small enough to train in a second: its flags, then `sample ddpm`'s.
#[test]
fn ddpm_flags_and_sampling_flags() {
    let out = scratch("ddpm");
    let o = out.display().to_string();
    let tiny = [
        "--device",
        "cpu",
        "--steps",
        "2",
        "--batch",
        "4",
        "--base",
        "8",
        "--mults",
        "1,2",
        "--res-blocks",
        "1",
        "--attention",
        "4",
        "--groups",
        "4",
        "--timesteps",
        "20",
        "--sample-steps",
        "2",
        "--image-size",
        "8",
        "--sample-every",
        "0",
        "--checkpoint-every",
        "0",
        "--eval-every",
        "0",
    ];
    for (flag, value) in [
        ("--groups", "3"),
        ("--mults", "1,0"),
        ("--image-size", "9"),
        ("--timesteps", "1"),
        ("--sample-steps", "21"),
        ("--lr", "0"),
        ("--ema", "1.5"),
        ("--p-uncond", "2"),
        ("--dropout", "1"),
        ("--schedule", "quadratic"),
        ("--prediction", "x0"),
    ] {
        let mut args: Vec<&str> = vec!["train", "ddpm", "--quiet", "--out", &o];
        args.extend(tiny);
        args.extend([flag, value]);
        let e = run(&args).unwrap_or_else(|| panic!("ddpm {flag} {value} was accepted"));
        assert!(
            e.contains(flag) || e.contains(&flag[2..]),
            "ddpm {flag} {value}: the error does not name the flag: {e}"
        );
        assert!(!out.exists(), "ddpm {flag} {value}: a failed command left a folder");
    }
    let mut args: Vec<&str> = vec!["train", "ddpm", "--quiet", "--out", &o];
    args.extend(tiny);
    assert_eq!(run(&args), None);
    let grid = out.join("grid.png").display().to_string();
    let strip = out.join("strip.png").display().to_string();
    let sample = |extra: &[&str]| {
        let mut a = vec!["sample", "ddpm", "--checkpoint", &o, "--n", "4", "--out", &grid];
        a.extend(extra);
        run(&a)
    };
    assert_eq!(sample(&["--sampler", "ddpm", "--strip", &strip]), None);
    assert!(out.join("grid.png").exists() && out.join("strip.png").exists());
    assert_eq!(sample(&["--sampler", "ddim", "--steps", "5", "--eta", "1", "--spacing", "linspace"]), None);
    assert!(sample(&["--steps", "0"]).unwrap().contains("--sample-steps 0"));
    assert!(sample(&["--steps", "21"]).unwrap().contains("--sample-steps 21"));
    assert!(sample(&["--label", "3"]).unwrap().contains("--label"));
    assert!(sample(&["--eta", "-1"]).unwrap().contains("--eta"));
}

#[test]
fn sample_cgan_draws_one_class_with_label() {
    let out = scratch("cgan-label");
    let o = out.display().to_string();
    let mut args: Vec<&str> = vec!["train", "cgan", "--quiet", "--out", &o];
    args.extend(["--device", "cpu", "--image-size", "16", "--ngf", "4", "--ndf", "4", "--batch", "8", "--steps", "2"]);
    args.extend(["--sample-every", "0", "--checkpoint-every", "0", "--eval-every", "0"]);
    assert_eq!(run(&args), None);
    let grid = out.join("threes.png").display().to_string();
    assert_eq!(run(&["sample", "cgan", "--checkpoint", &o, "--n", "8", "--label", "3", "--out", &grid]), None);
    assert!(out.join("threes.png").exists());
    let e = run(&["sample", "cgan", "--checkpoint", &o, "--label", "10", "--out", &grid]).unwrap();
    assert!(e.starts_with("--label 10"), "{e}");
}

#[test]
fn flow_flags_and_sampling_flags() {
    let tiny = ["--device", "cpu", "--steps", "2", "--batch", "4", "--hidden", "4", "--image-size", "8"];
    let quiet = ["--sample-every", "0", "--checkpoint-every", "0", "--eval-every", "0"];
    for (model, bad) in [
        (
            "glow",
            &[("--depth", "0"), ("--levels", "5"), ("--image-size", "10"), ("--invconv", "qr"), ("--lr", "0")][..],
        ),
        ("realnvp", &[("--alpha", "0.5"), ("--image-size", "9"), ("--blocks", "17"), ("--temperature", "-1")][..]),
    ] {
        let out = scratch(model);
        let o = out.display().to_string();
        let train = |extra: &[&str]| {
            let mut args: Vec<&str> = vec!["train", model, "--quiet", "--out", &o];
            args.extend(tiny);
            args.extend(quiet);
            args.extend(extra);
            run(&args)
        };
        for (flag, value) in bad {
            let e = train(&[flag, value]).unwrap_or_else(|| panic!("{model} {flag} {value} was accepted"));
            assert!(
                e.contains(flag) || e.contains(&flag[2..]),
                "{model} {flag} {value}: the error does not name the flag: {e}"
            );
            assert!(!out.exists(), "{model} {flag} {value}: a failed command left a folder");
        }
        assert_eq!(train(&["--reversible-backward"]), None);
        let grid = out.join("grid.png").display().to_string();
        let sample = |extra: &[&str]| {
            let mut a = vec!["sample", model, "--checkpoint", &o, "--n", "4", "--out", &grid];
            a.extend(extra);
            run(&a)
        };
        assert_eq!(sample(&["--temperature", "0.5"]), None);
        assert!(out.join("grid.png").exists());
        assert!(sample(&["--temperature", "-1"]).unwrap().contains("--temperature"));
    }
}
