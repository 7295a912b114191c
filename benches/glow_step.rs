//! The default Glow (crates/flow; 2 levels of 24 steps, 16 hidden
//! channels): one training step (dequantisation, actnorm/1×1 conv/coupling
//! forward and backward, Adam) at batch 64 on 28×28 digits, and
//! 64 samples at T = 0.7 (every layer inverted, W⁻¹ on the host).
//! `cargo bench --bench glow_step`

mod common;

use common::config;
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::flow::{Glow, GlowConfig};

fn glow_step(c: &mut Criterion) {
    common::flow_step(c, "glow_step", |dev| Glow::new(GlowConfig::default(), dev, 0).unwrap().flow);
}

criterion_group! { name = benches; config = config(); targets = glow_step }
criterion_main!(benches);
