//! The default RealNVP (crates/flow; 10 couplings with 32-channel
//! residual nets): one training step (dequantisation, logit, couplings'
//! forward and backward, clipping, Adam) at batch 64 on 28×28 digits, and
//! 64 samples at T = 0.7 (every coupling inverted).
//! `cargo bench --bench realnvp_step`

mod common;

use common::config;
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::flow::{RealNvp, RealNvpConfig};

fn realnvp_step(c: &mut Criterion) {
    common::flow_step(c, "realnvp_step", |dev| RealNvp::new(RealNvpConfig::default(), dev, 0).unwrap().flow);
}

criterion_group! { name = benches; config = config(); targets = realnvp_step }
criterion_main!(benches);
