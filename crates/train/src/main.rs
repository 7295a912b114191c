//! `kiln-train train <model> [options]`, `kiln-train sample <model> ...`,
//! `kiln-train data mnist`. Built in release by `cargo xtask train|sample`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches};
use kiln_train::cli::{Cli, given_flags};

fn main() -> ExitCode {
    // Mesa's Vulkan driver prints "error: XDG_RUNTIME_DIR is invalid or not
    // set" twice while kiln probes for a GPU on a machine without a
    // session. Any existing folder silences it.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: first thing in main, before any other thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let first = std::sync::OnceLock::new();
    // Ctrl-C, SIGTERM or SIGHUP: finish the step and checkpoint. Another one
    // a second or more later kills; within that second it is the same request
    // delivered twice (`timeout` signals the command and its process group).
    if let Err(e) = ctrlc::set_handler(move || {
        let at = *first.get_or_init(Instant::now);
        if flag.swap(true, Ordering::SeqCst) && at.elapsed() >= Duration::from_secs(1) {
            std::process::exit(130);
        }
    }) {
        eprintln!("warning: no signal handler ({e}); Ctrl-C will lose the steps since the last checkpoint");
    }
    // The command runs on a worker of its own pool: a parallel op then splits
    // its work with the other workers instead of waking them and sleeping
    // until they finish (the hand-off cost of every small op).
    let run = || kiln_train::registry::run(cli.command, given_flags(&matches), &stop);
    let result = match rayon::ThreadPoolBuilder::new().build() {
        Ok(pool) => pool.install(run),
        Err(_) => run(),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
