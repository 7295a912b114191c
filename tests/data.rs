//! kiln-data: the IDX reader (including broken files), the shipped MNIST
//! subset, and the loader's determinism.

use std::io::Write;
use std::sync::Arc;

use kiln::data::{Loader, LoaderConfig, idx::parse_idx, load_mnist, read_idx, shipped_mnist_dir};

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-data-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn idx_plain_and_gzip() {
    let raw = idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    let a = read_idx(&temp_file("plain.idx", &raw)).unwrap();
    assert_eq!((a.dims.clone(), a.data.clone()), (vec![2, 3], vec![1, 2, 3, 4, 5, 6]));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    let b = read_idx(&temp_file("zipped.idx.gz", &gz.finish().unwrap())).unwrap();
    assert_eq!(a, b);
}

#[test]
fn idx_errors_name_the_problem_and_the_file() {
    let truncated = idx_bytes(&[2, 3], &[1, 2, 3]);
    let path = temp_file("truncated.idx", &truncated);
    let e = read_idx(&path).unwrap_err().to_string();
    assert!(e.contains("truncated.idx") && e.contains("need 6 data bytes but the file has 3"), "{e}");
    assert!(parse_idx(&[1, 2, 3, 4]).unwrap_err().contains("bad magic number"));
    assert!(parse_idx(&[0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap_err().contains("element type 0x0d"));
    assert!(parse_idx(&[0, 0, 8, 3, 0]).unwrap_err().contains("truncated header"));
    let e = read_idx(&temp_file("bad.gz", &[0x1f, 0x8b, 1, 2, 3])).unwrap_err().to_string();
    assert!(e.contains("bad.gz") && e.contains("corrupt gzip"), "{e}");
    let e = read_idx(std::path::Path::new("/nonexistent/x.idx")).unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/x.idx"), "{e}");
}

#[test]
fn the_shipped_digits_load() {
    let d = load_mnist(&shipped_mnist_dir()).unwrap();
    assert_eq!((d.n, d.channels, d.height, d.width), (10_000, 1, 28, 28));
    let mut counts = [0usize; 10];
    d.labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    // Real digits: mostly background, some full-intensity strokes.
    let zeros = d.images.iter().filter(|&&v| v == 0).count() as f64 / d.images.len() as f64;
    assert!(zeros > 0.7 && d.images.iter().any(|&v| v >= 250), "background fraction {zeros}");
}

#[test]
fn missing_mnist_files_are_named() {
    let e = load_mnist(std::path::Path::new("/tmp")).unwrap_err().to_string();
    assert!(e.contains("train-images-idx3-ubyte"), "{e}");
}

#[test]
fn loader_is_seeded_and_resumable() {
    let d = Arc::new(load_mnist(&shipped_mnist_dir()).unwrap());
    let cfg = LoaderConfig { batch: 16, image_size: 32, seed: 7 };
    let a = Loader::new(d.clone(), cfg.clone(), 0).unwrap();
    let first: Vec<_> = (0..5).map(|_| a.next_batch().unwrap()).collect();
    let b = Loader::new(d.clone(), cfg.clone(), 3).unwrap();
    let resumed = b.next_batch().unwrap();
    assert_eq!(resumed.images, first[3].images);
    assert_eq!(resumed.step, 3);
    assert!(first[0].images.iter().all(|v| (-1.0..=1.0).contains(v)));
    assert_eq!(first[0].images.len(), 16 * 32 * 32);
    let other = Loader::new(d.clone(), LoaderConfig { seed: 8, ..cfg }, 0).unwrap();
    assert_ne!(other.next_batch().unwrap().labels, first[0].labels);
    assert!(Loader::new(d, LoaderConfig { batch: 20_000, image_size: 32, seed: 0 }, 0).is_err());
}
