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
    let dir = crate::common::scratch_dir(&format!("data-{name}"));
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

/// An IDX file with a zero dim is an error naming the file, not a panic
/// in the loader's thread.
#[test]
fn mnist_with_an_empty_dim_is_refused() {
    let dir = crate::common::scratch_dir("data-zero-width");
    std::fs::write(dir.join("train-images-idx3-ubyte"), idx_bytes(&[2, 28, 0], &[])).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx_bytes(&[2], &[1, 2])).unwrap();
    let e = load_mnist(&dir).unwrap_err().to_string();
    assert!(e.contains("train-images-idx3-ubyte") && e.contains("every dim must be at least 1"), "{e}");
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

#[test]
fn downloads_are_verified_and_offline_fails_clearly() {
    use kiln::data::{download_mnist, verify_sha256};
    let p = temp_file("hello.bin", b"hello");
    // SHA-256("hello")
    let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    verify_sha256(&p, 5, sha).unwrap();
    let e = verify_sha256(&p, 5, &"0".repeat(64)).unwrap_err().to_string();
    assert!(e.contains("hello.bin") && e.contains(sha), "{e}");
    assert!(verify_sha256(&p, 6, sha).unwrap_err().to_string().contains("expected 6"));
    // Port 9 on loopback refuses at once: the error says which URLs failed.
    let out = crate::common::scratch_dir("data-download");
    let e = download_mnist(&out, &["http://127.0.0.1:9/"]).unwrap_err().to_string();
    assert!(e.contains("could not download") && e.contains("http://127.0.0.1:9/train-images-idx3-ubyte.gz"), "{e}");
    assert!(!out.join("train-images-idx3-ubyte.gz.part").exists());
}

#[test]
fn image_folders_load_with_labels_from_subfolders() {
    let root = crate::common::scratch_dir("data-folder");
    for (class, shade) in [("cats", 40u8), ("dogs", 200u8)] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..3 {
            // 12×8 RGB: the center crop keeps the middle 8×8.
            let px: Vec<u8> = (0..12 * 8).flat_map(|_| [shade, shade / 2, i as u8]).collect();
            kiln::train::images::write_png(&root.join(class).join(format!("{i}.png")), 12, 8, true, &px).unwrap();
        }
    }
    let set = kiln::data::load_image_folder(&root, 4, 3).unwrap();
    assert_eq!((set.n, set.channels, set.height, set.width), (6, 3, 4, 4));
    assert_eq!(set.labels, vec![0, 0, 0, 1, 1, 1]);
    assert!(set.image(0)[..16].iter().all(|&v| v == 40), "red plane of a cat");
    assert!(set.image(5)[16..32].iter().all(|&v| v == 100), "green plane of a dog");
    let grey = kiln::data::load_image_folder(&root, 4, 1).unwrap();
    assert_eq!(grey.images.len(), 6 * 16);
    let e = kiln::data::load_image_folder(&root.join("cats"), 4, 2).unwrap_err().to_string();
    assert!(e.contains("channels must be 1 or 3"), "{e}");
}
