//! kiln-train: the training runs behind `cargo xtask train <model>`. Each
//! model is a module with its options and its run loop; the binary
//! (`src/main.rs`) only parses the command line.

pub mod dcgan;
pub mod images;
pub mod run_dir;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;
