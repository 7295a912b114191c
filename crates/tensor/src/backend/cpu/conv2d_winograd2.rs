//! 4×4 stride-2 convolutions (the DCGAN discriminator's) and their input
//! gradients (the generator's transposed convs) by Winograd's minimal
//! filtering F(2×2, 2×2) (Lavin & Gray 2016).
//!
//! Both are sums of 2×2 stride-1 convolutions:
//! - the forward is one, over the input split into its four (row, column)
//!   parities: channel (c, a, b) holds x[c][2p + a − ph][2q + b − pw], and
//!   its 2×2 kernel is w[o][c][2u + a][2v + b] (depth 4·cg);
//! - the input gradient is four, one per parity (ey, ex) of dx, each over
//!   dy with the taps of w that reach that parity (`conv2d_phases`).
//!
//! F(2×2, 2×2) turns a 2×2 output tile's 16 multiply-adds per channel pair
//! into 9 (1.78× fewer): one GEMM per transform element ξν, of the
//! transformed weights U = G k Gᵀ (og × depth) by the transformed 3×3
//! input tiles V = Bᵀ d B (depth × tiles), then Aᵀ M A per tile, with
//! Bᵀ = [[1, −1, 0], [0, 1, 0], [0, −1, 1]], G = [[1, 0], [1, 1], [0, 1]],
//! Aᵀ = [[1, 1, 0], [0, 1, 1]]. The transforms only add and subtract.
//!
//! f32 on AVX-512: a vector holds 16 tiles of any images (DCGAN's maps are
//! 2–16 tiles wide), gathered from the input and scattered to the output
//! with masks for the padding and the map's edge.

use std::arch::x86_64::*;

use super::conv2d_phases::axis;
use super::sgemm::{
    PANEL, PANEL_ROWS, PackedA, View, packed_a_index, packed_a_len, packed_b_index, packed_b_len, sgemm, sgemm_packed_b,
};
use super::{build_rows, with_scratch};
use crate::ops::conv2d::ConvGeom;

/// Transform elements per tile (3×3).
const XI: usize = 9;
/// Tiles per vector.
const LANES: usize = 16;

/// One 2×2 stride-1 convolution of the sum: its virtual input's channel κ
/// at (p, q) is the source's channel `taps[κ].0` at (step·p + dr, step·q +
/// dc) (zero outside the source map); its output (p, q) for p < rows,
/// q < cols lands at (ostep·p + er, ostep·q + ec) of the destination.
struct Phase {
    taps: Vec<(usize, isize, isize)>,
    rows: usize,
    cols: usize,
    er: usize,
    ec: usize,
    /// U_ξν (og × depth), packed.
    u: Vec<PackedA>,
    /// When each whole vector of tiles covers 64 consecutive outputs of a
    /// channel: the permutes that put them in order (`block_stores`).
    block: Option<BlockStores>,
}

/// Per output vector k of a block of 64: the two of (a0, a1, b0, b1) it
/// takes lanes from and the permute's indices. a_h, b_h hold the outputs
/// of tiles 8h..8h + 8 in tile rows' first and second output rows, the
/// two columns of a tile side by side.
type BlockStores = [(usize, usize, [i32; LANES]); 4];

/// The permutes when 16 consecutive tiles are whole tile rows of `tx`
/// tiles whose outputs fill rows 2·tx wide, or None if an output vector
/// would need more than two sources.
fn block_stores(tx: usize) -> Option<BlockStores> {
    let mut out = [(0, 0, [0; LANES]); 4];
    for (k, dst) in out.iter_mut().enumerate() {
        let mut srcs = Vec::with_capacity(2);
        let lanes: [(usize, usize); LANES] = std::array::from_fn(|m| {
            let f = LANES * k + m;
            let (r, c) = (f / (2 * tx), f % (2 * tx));
            let l = r / 2 * tx + c / 2;
            let src = 2 * (r % 2) + l / 8;
            if !srcs.contains(&src) {
                srcs.push(src);
            }
            (src, 2 * (l % 8) + c % 2)
        });
        if srcs.len() > 2 {
            return None;
        }
        let (s0, s1) = (srcs[0], srcs[srcs.len() - 1]);
        *dst = (s0, s1, lanes.map(|(src, lane)| (lane + if src == s0 { 0 } else { LANES }) as i32));
    }
    Some(out)
}

impl Phase {
    fn tiles(&self) -> (usize, usize) {
        (self.rows.div_ceil(2), self.cols.div_ceil(2))
    }
}

/// A convolution as a sum of phases, from source maps (channels × h × w
/// per image) to destination maps.
pub struct Plan {
    phases: Vec<Phase>,
    step: usize,
    ostep: usize,
    src: [usize; 3],
    dst: [usize; 3],
}

/// Whether the path is on (`KILN_CPU_WINOGRAD=0` turns it off) and `g` is
/// a 4×4 stride-2 convolution it serves: no dilation, one group, ≥ 16
/// channels on both sides (the GEMMs' rows; the thin first and last DCGAN
/// layers keep their direct paths).
fn applies(g: &ConvGeom) -> bool {
    super::conv2d_winograd::enabled()
        && (g.kh, g.kw) == (4, 4)
        && g.p.stride == [2, 2]
        && g.p.dilation == [1, 1]
        && g.p.groups == 1
        && g.c >= 16
        && g.o >= 16
        && g.oh > 0
        && g.ow > 0
        && g.n * (g.c * g.h * g.w).max(g.o * g.oh * g.ow) < i32::MAX as usize
        && g.o * g.c * 16 < i32::MAX as usize
}

/// Where the 2×2 kernels of the GEMM's A lie in w: row i, depth κ, tap
/// (u, v) at w[i·row + col[κ] + taps[2u + v]].
struct Kernels {
    row: usize,
    col: Vec<usize>,
    taps: [usize; 4],
}

/// U = G k Gᵀ of every kernel (m × depth), written straight into the
/// GEMM's packed layout: nine matrices, one per ξν. Tasks take 8-row
/// panels, whose kernels load with one gather per tap.
fn transformed(w: &[f32], m: usize, k: &Kernels) -> Vec<PackedA> {
    use rayon::prelude::*;
    let depth = k.col.len();
    let len = packed_a_len(m, depth);
    // Every live gather reads inside w, at an i32 offset.
    assert!(m > 0 && (m * k.row).max(w.len()) < i32::MAX as usize);
    let last = (m - 1) * k.row + k.col.iter().max().unwrap_or(&0) + k.taps.iter().max().unwrap_or(&0);
    assert!(last < w.len());
    let mut data: Vec<Vec<f32>> = (0..XI).map(|_| Vec::with_capacity(len)).collect();
    // Tasks write disjoint panels of the nine buffers.
    let out: [SyncPtr; XI] = std::array::from_fn(|e| SyncPtr(data[e].as_mut_ptr()));
    (0..m.div_ceil(PANEL_ROWS)).into_par_iter().for_each(|panel| {
        let out = &out;
        // SAFETY: AVX-512 is the caller's; the panel's floats lie inside each buffer.
        unsafe { transform_panel(w, m, k, PANEL_ROWS * panel, &out.each_ref().map(|p| p.0)) };
    });
    data.into_iter()
        .map(|mut d| {
            // SAFETY: the panels wrote every float (rows past m as zeros).
            unsafe {
                d.set_len(len);
                PackedA::from_packed(m, depth, d)
            }
        })
        .collect()
}

/// `transformed` for rows i0..i0 + 8 (zero past m).
///
/// # Safety
/// AVX-512; each of `out` holds `packed_a_len(m, depth)` floats; the
/// kernels of rows < m lie in w.
#[target_feature(enable = "avx512f,avx512vl,avx2")]
unsafe fn transform_panel(w: &[f32], m: usize, k: &Kernels, i0: usize, out: &[*mut f32; XI]) {
    let depth = k.col.len();
    let live = (((1u32 << (m - i0).min(8)) - 1) & 0xff) as __mmask8;
    let rows = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(k.row as i32));
    let rows = _mm256_add_epi32(rows, _mm256_set1_epi32((i0 * k.row) as i32));
    let g = |a: __m256, b: __m256| [a, _mm256_add_ps(a, b), b];
    for (kappa, &col) in k.col.iter().enumerate() {
        let tap = |t: usize| {
            let idx = _mm256_add_epi32(rows, _mm256_set1_epi32((col + k.taps[t]) as i32));
            // SAFETY: live rows address their kernel in w (the caller's).
            unsafe { _mm256_mmask_i32gather_ps::<4>(_mm256_setzero_ps(), live, idx, w.as_ptr()) }
        };
        // G along u for each v, then along v.
        let cols = [g(tap(0), tap(2)), g(tap(1), tap(3))];
        let at = packed_a_index(m, depth, i0, kappa);
        for xi in 0..3 {
            for (nu, u) in g(cols[0][xi], cols[1][xi]).into_iter().enumerate() {
                // SAFETY: at + 8 ≤ packed_a_len (the caller's).
                unsafe { _mm256_storeu_ps(out[3 * xi + nu].add(at), u) };
            }
        }
    }
}

impl Plan {
    /// The forward of `g` (x → y) when this path serves it.
    pub fn forward(g: &ConvGeom, w: &[f32]) -> Option<Plan> {
        let mut plan = Plan::parities(g)?;
        // Tap (u, v) of depth (c, a, b) is w[o][c][2u + a][2v + b].
        let col = (0..4 * g.c).map(|k| k / 4 * 16 + k / 2 % 2 * 4 + k % 2).collect();
        plan.phases[0].u = transformed(w, g.o, &Kernels { row: g.c * 16, col, taps: [0, 2, 8, 10] });
        Some(plan)
    }

    /// The forward's one phase over the input's parities, without weights:
    /// depth index κ = 4c + 2a + b is channel c at row parity a, column
    /// parity b.
    fn parities(g: &ConvGeom) -> Option<Plan> {
        if !applies(g) {
            return None;
        }
        let [ph, pw] = g.p.padding.map(|p| p as isize);
        let taps = (0..4 * g.c).map(|k| (k / 4, (k / 2 % 2) as isize - ph, (k % 2) as isize - pw)).collect();
        // Whole vectors of tiles fill 64 consecutive outputs when 16 tiles
        // are whole tile rows of one image and no tile is cut by the edge.
        let (ty, tx) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
        let whole = g.oh.is_multiple_of(2)
            && g.ow.is_multiple_of(2)
            && LANES.is_multiple_of(tx)
            && (ty * tx).is_multiple_of(LANES);
        let block = if whole { block_stores(tx) } else { None };
        let phase = Phase { taps, rows: g.oh, cols: g.ow, er: 0, ec: 0, u: Vec::new(), block };
        Some(Plan { phases: vec![phase], step: 2, ostep: 1, src: [g.c, g.h, g.w], dst: [g.o, g.oh, g.ow] })
    }

    /// The input gradient of `g` (dy → dx) when this path serves it.
    pub fn bwd_input(g: &ConvGeom, w: &[f32]) -> Option<Plan> {
        if !applies(g) {
            return None;
        }
        let (ph, pw) = (g.p.padding[0], g.p.padding[1]);
        let mut phases = Vec::with_capacity(4);
        for ey in 0..2 {
            for ex in 0..2 {
                let (ay, ax) = (axis(4, 2, ph, g.h, ey), axis(4, 2, pw, g.w, ex));
                if ay.len == 0 || ax.len == 0 {
                    continue;
                }
                // Tap a of an axis meets dy at q + d − a: the 2×2 conv's tap u = 1 − a.
                let taps = (0..g.o).map(|o| (o, ay.d as isize - 1, ax.d as isize - 1)).collect();
                // Tap (u, v) of row c, depth o is w[o][c][i0y + 2(1 − u)][i0x + 2(1 − v)].
                let col = (0..g.o).map(|o| o * g.c * 16 + ay.i0 * 4 + ax.i0).collect();
                let u = transformed(w, g.c, &Kernels { row: 16, col, taps: [10, 8, 2, 0] });
                phases.push(Phase { taps, rows: ay.len, cols: ax.len, er: ey, ec: ex, u, block: None });
            }
        }
        Some(Plan { phases, step: 1, ostep: 2, src: [g.o, g.oh, g.ow], dst: [g.c, g.h, g.w] })
    }

    /// Whether one task runs every phase over its tiles. Phases interleave
    /// in the destination (ostep 2): run phase after phase, each
    /// destination line is fetched from memory and written back once per
    /// phase; run together, once. But each task then streams every phase's
    /// weights: worth it where a phase's outputs outweigh its weights 4:1
    /// (convT 128→64 16→32 ran 7% faster; 256→128 8→16 9% slower).
    fn grouped(&self, n: usize) -> bool {
        let (og, depth) = (self.dst[0], self.phases.iter().map(|p| p.taps.len()).max().unwrap_or(0));
        let outputs = |p: &Phase| 4 * og * n * p.tiles().0 * p.tiles().1;
        self.ostep > 1 && self.phases.iter().all(|p| outputs(p) >= 4 * XI * og * depth)
    }

    /// Whether a grouped run writes whole output rows (`joint_output_tiles`):
    /// the four phases (ey, ex) in order, each a map half as tall and wide
    /// in whole tiles, 16 tiles are whole tile rows of 8 or 16 tiles (maps
    /// 32 or 64 wide) and every vector of tiles is full.
    fn joint(&self, n: usize) -> bool {
        let [_, dh, dw] = self.dst;
        let (ty, tx) = (dh / 4, dw / 4);
        let halves =
            self.phases.iter().enumerate().all(|(i, p)| (p.er, p.ec, p.rows, p.cols) == (i / 2, i % 2, dh / 2, dw / 2));
        self.grouped(n)
            && self.phases.len() == 4
            && halves
            && dh.is_multiple_of(4)
            && dw.is_multiple_of(4)
            && matches!(tx, 8 | 16)
            && (ty * tx).is_multiple_of(LANES)
    }

    /// The destination of `n` images from their sources.
    ///
    /// # Safety
    /// The CPU has AVX-512 with the f32 GEMM available; `src` holds n source maps.
    pub unsafe fn run(&self, src: &[f32], n: usize) -> Vec<f32> {
        use rayon::prelude::*;
        let (src_img, dst_img) = (self.src.iter().product::<usize>(), self.dst.iter().product::<usize>());
        // Gather and scatter offsets are i32 (`applies`).
        assert!(src.len() >= n * src_img && n * src_img.max(dst_img) < i32::MAX as usize);
        let og = self.dst[0];
        let depth = self.phases.iter().map(|p| p.taps.len()).max().unwrap_or(0);
        // A joint pass keeps all four phases' GEMM outputs at once.
        let joint = self.joint(n);
        let ms = if joint { 4 } else { 1 };
        // Transformed input plus GEMM outputs: 36·(depth + ms·og) bytes per
        // tile; about 1.5 MiB per chunk keeps both in L2. Whole panels.
        let fit = ((43_690 / (depth + ms * og)) / PANEL * PANEL).clamp(PANEL, 192);
        let tiles = |p: &Phase| n * p.tiles().0 * p.tiles().1;
        // Runs of phases a task does in turn: all of them, or one each.
        let phases = self.phases.len();
        let runs = if self.grouped(n) {
            std::iter::once(0..phases).collect()
        } else {
            (0..phases).map(|p| p..p + 1).collect::<Vec<_>>()
        };
        // Tasks are ranges of any images' tiles (the same range in each
        // phase of a run), split evenly: a short last chunk would stream
        // all the weights for a few tiles.
        let most = self.phases.iter().map(tiles).max().unwrap_or(0);
        let chunk = most.div_ceil(most.div_ceil(fit).max(1)).next_multiple_of(LANES);
        let tasks: Vec<(std::ops::Range<usize>, usize)> =
            runs.into_iter().flat_map(|r| (0..most).step_by(chunk.max(1)).map(move |t0| (r.clone(), t0))).collect();
        let (vstride, mstride) = (packed_b_len(depth, chunk) + LANES, og * chunk + LANES);
        let mut out: Vec<f32> = Vec::with_capacity(n * dst_img);
        // Each output is written by one lane of one tile of one phase.
        let dst = SyncPtr(out.as_mut_ptr());
        tasks.into_par_iter().for_each(|(run, t0)| {
            let dst = &dst;
            with_scratch([XI * vstride, ms * XI * mstride], |v: &mut [f32], mall: &mut [f32]| {
                for (pi, phase) in self.phases[run].iter().enumerate() {
                    let tiles = tiles(phase);
                    let nt = chunk.min(tiles.saturating_sub(t0));
                    if nt == 0 {
                        continue;
                    }
                    let groups: Vec<Group> =
                        (t0..t0 + nt).step_by(LANES).map(|s| self.group(phase, s, tiles)).collect();
                    let np = nt.next_multiple_of(LANES);
                    // SAFETY: AVX-512 is the caller's; the group offsets lie in src.
                    unsafe {
                        self.input_tiles(phase, src, &groups, 0..phase.taps.len(), None, v.as_mut_ptr(), vstride)
                    };
                    let at = if joint { pi * XI * mstride } else { 0 };
                    for (e, ue) in phase.u.iter().enumerate() {
                        let (b, c) = (v[e * vstride..].as_ptr(), mall[at + e * mstride..].as_mut_ptr());
                        // SAFETY: B is packed depth × np inside v, C og × np inside m.
                        unsafe { sgemm_packed_b(ue, np, b, false, c, chunk) };
                    }
                    if !joint {
                        // SAFETY: the scatters are masked to the n destination maps.
                        unsafe { self.output_tiles(phase, &groups, mall, mstride, chunk, dst.0) };
                    } else if pi + 1 == phases {
                        // SAFETY: whole groups of whole tile rows (`joint`) inside the maps.
                        unsafe { self.joint_output_tiles(t0, groups.len(), mall, mstride, chunk, dst.0) };
                    }
                }
            });
        });
        // SAFETY: the phases' tiles cover every destination element.
        unsafe { out.set_len(n * dst_img) };
        out
    }
}

/// The weight gradient of `g` (x, dy → dw) when this path serves it:
/// with the forward's one phase over x's parities and U = G k Gᵀ, ∂L/∂U_ξν
/// = Σ over tiles of (G dy Gᵀ)_ξν ⊙ (Bᵀ d B)_ξν (A = G for F(2×2, 2×2)),
/// one GEMM per ξν (og × tiles by tiles × depth, deep), then ∂L/∂k = Gᵀ
/// (∂L/∂U) G. Tiles run in a fixed sequence of chunks and each GEMM task
/// owns its rows of ∂U, so the sums do not depend on the thread count.
///
/// # Safety
/// The CPU has AVX-512 with the f32 GEMM available; x and dy hold g.n images.
pub unsafe fn weight_grad(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Option<Vec<f32>> {
    use rayon::prelude::*;
    let plan = Plan::parities(g)?;
    let (phase, og, depth) = (&plan.phases[0], g.o, 4 * g.c);
    assert!(x.len() >= g.n * g.c * g.h * g.w && dy.len() >= g.n * g.o * g.oh * g.ow);
    let tiles = g.n * phase.tiles().0 * phase.tiles().1;
    if tiles == 0 {
        return Some(vec![0.0; og * g.c * 16]);
    }
    // Chunks of up to 16 MiB of transformed tiles, evenly split.
    let fit = ((1 << 22) / (XI * (depth + og))).max(LANES);
    let chunk = tiles.div_ceil(tiles.div_ceil(fit).max(1)).next_multiple_of(LANES);
    let (vstride, mstride) = (depth * chunk, og * chunk);
    // ∂U: the first chunk's GEMMs write every element (no accumulate).
    let mut du: Vec<f32> = Vec::with_capacity(XI * og * depth);
    let dup = SyncPtr(du.as_mut_ptr());
    // GEMM tasks: (ξν, block of ∂U rows).
    let ob = og.div_ceil(2).next_multiple_of(PANEL_ROWS);
    with_scratch([XI * vstride, XI * mstride], |v: &mut [f32], m: &mut [f32]| {
        for t0 in (0..tiles).step_by(chunk) {
            let nt = chunk.min(tiles - t0);
            let groups: Vec<Group> = (t0..t0 + nt).step_by(LANES).map(|s| plan.group(phase, s, tiles)).collect();
            let np = groups.len() * LANES;
            // Transforms in parallel over blocks of depth (of rows of m).
            const BLOCK: usize = 32;
            let (vp, mp) = (SyncPtr(v.as_mut_ptr()), SyncPtr(m.as_mut_ptr()));
            let kd = depth.div_ceil(BLOCK);
            (0..kd + og.div_ceil(BLOCK)).into_par_iter().for_each(|b| {
                let (vp, mp) = (&vp, &mp);
                // SAFETY: blocks write disjoint rows of each of the nine matrices.
                unsafe {
                    if b < kd {
                        let k0 = b * BLOCK;
                        let v = vp.0.add(k0 * chunk);
                        plan.input_tiles(phase, x, &groups, k0..(k0 + BLOCK).min(depth), Some(chunk), v, vstride);
                    } else {
                        let o0 = (b - kd) * BLOCK;
                        let m = mp.0.add(o0 * chunk);
                        plan.output_grad_tiles(&groups, dy, o0..(o0 + BLOCK).min(og), m, mstride, chunk);
                    }
                }
            });
            let (v, m) = (&*v, &*m);
            (0..XI * og.div_ceil(ob)).into_par_iter().for_each(|task| {
                let (e, o0, dup) = (task % XI, task / XI * ob, &dup);
                let rows = ob.min(og - o0);
                // ∂U_ξν[o0..] (rows × depth) += M_ξν[o0..] (rows × np) · V_ξνᵀ (np × depth)
                let a = View { ptr: m[e * mstride + o0 * chunk..].as_ptr(), rs: chunk, cs: 1 };
                let b = View { ptr: v[e * vstride..].as_ptr(), rs: 1, cs: chunk };
                // SAFETY: the views cover the chunk's matrices; each task owns rows
                // o0..o0 + rows of ∂U_ξν, inside du's capacity.
                unsafe { sgemm([rows, np, depth], a, b, t0 > 0, dup.0.add((e * og + o0) * depth), depth) };
            });
        }
    });
    // SAFETY: the first chunk's GEMMs wrote all XI·og·depth elements.
    unsafe { du.set_len(XI * og * depth) };
    // SAFETY: AVX-512 is the caller's.
    Some(build_rows(og * g.c * 16, g.c * 16, |start, dwo| unsafe {
        weights_from_u(&du, og, depth, start / (g.c * 16), dwo)
    }))
}

/// Row o of the weight gradient from ∂U: ∂k = Gᵀ ∂U G, with ∂k[o][(c, a,
/// b)][u][v] = dw[o][c][2u + a][2v + b]. 16 depths (4 channels) a step.
///
/// # Safety
/// AVX-512; du holds XI·og·depth, `dwo` depth·4 elements.
#[target_feature(enable = "avx512f")]
unsafe fn weights_from_u(du: &[f32], og: usize, depth: usize, o: usize, dwo: &mut [std::mem::MaybeUninit<f32>]) {
    assert!(du.len() >= XI * og * depth && dwo.len() == 4 * depth && o < og);
    // Lane l = 4c + 2a + b of a step goes to c·16 + 4a + b, plus 8u + 2v.
    let lanes = _mm512_setr_epi32(0, 1, 4, 5, 16, 17, 20, 21, 32, 33, 36, 37, 48, 49, 52, 53);
    let gt = |a: __m512, b: __m512, c: __m512| [_mm512_add_ps(a, b), _mm512_add_ps(b, c)];
    for k0 in (0..depth).step_by(LANES) {
        let live = super::conv2d::stride2::first(depth - k0);
        // SAFETY: masked to depths < depth of row o of matrix e.
        let du = |e: usize| unsafe { _mm512_maskz_loadu_ps(live, du[(e * og + o) * depth + k0..].as_ptr()) };
        let rows = [0, 1, 2].map(|xi| gt(du(3 * xi), du(3 * xi + 1), du(3 * xi + 2)));
        let base = _mm512_add_epi32(lanes, _mm512_set1_epi32(4 * k0 as i32));
        // v picks the same element of the three rows.
        #[allow(clippy::needless_range_loop)]
        for v in 0..2 {
            for (u, d) in gt(rows[0][v], rows[1][v], rows[2][v]).into_iter().enumerate() {
                let idx = _mm512_add_epi32(base, _mm512_set1_epi32((8 * u + 2 * v) as i32));
                // SAFETY: live lanes index c·16 + … < 4·depth = dwo.len().
                unsafe { _mm512_mask_i32scatter_ps::<4>(dwo.as_mut_ptr().cast(), live, idx, d) };
            }
        }
    }
}

/// A pointer shared by tasks that write disjoint parts of its buffer.
struct SyncPtr(*mut f32);
// SAFETY: see the uses: every task touches only its own elements.
unsafe impl Sync for SyncPtr {}

/// Aᵀ M A of 16 tiles whose element ξν lies at m + (3ξ + ν)·stride: their
/// outputs (i, j), one vector each (Aᵀ along ξ for each ν, then along ν).
///
/// # Safety
/// AVX-512; m + e·stride holds 16 floats for every e < 9.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn inverse(m: *const f32, stride: usize) -> [[__m512; 2]; 2] {
    // SAFETY: the caller's.
    let load = |e: usize| unsafe { _mm512_loadu_ps(m.add(e * stride)) };
    let rows = [0, 1, 2].map(|nu| {
        let (a, b, c) = (load(nu), load(3 + nu), load(6 + nu));
        [_mm512_add_ps(a, b), _mm512_add_ps(b, c)]
    });
    [0, 1].map(|i| [_mm512_add_ps(rows[0][i], rows[1][i]), _mm512_add_ps(rows[1][i], rows[2][i])])
}

/// Permute indices that put two vectors' lanes side by side, a0 b0 a1 b1 …:
/// from lanes 0..8 of each, and from lanes 8..16.
#[inline]
#[target_feature(enable = "avx512f")]
fn side_by_side() -> [__m512i; 2] {
    let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    [lo, _mm512_add_epi32(lo, _mm512_set1_epi32(8))]
}

/// 16 tiles' source and destination coordinates (lanes past the last tile
/// are masked off).
struct Group {
    /// Source offset of each tile's first input (row and column before the
    /// phase's shifts), and that row and column.
    base: __m512i,
    row: __m512i,
    col: __m512i,
    live: __mmask16,
    /// Destination offset of output (0, 0), and the outputs (i, j) inside the map.
    out: __m512i,
    outs: [__mmask16; 4],
    /// The destination offset of the first of 64 consecutive outputs (per
    /// channel) when the phase's `block` applies and all 16 tiles are live.
    first: Option<usize>,
}

impl Plan {
    /// A tile's outputs (i, j) relative to its output (0, 0) in the destination.
    fn out_offsets(&self) -> [i32; 4] {
        let (os, dw) = (self.ostep as i32, self.dst[2] as i32);
        [0, os, os * dw, os * dw + os]
    }

    /// Tiles s..s + 16 of a task's `tiles` (image-major, then tile rows).
    fn group(&self, phase: &Phase, s: usize, tiles: usize) -> Group {
        let (ty, tx) = phase.tiles();
        let ([_, _, w], [_, _, dw]) = (self.src, self.dst);
        let mut lanes = [[0i32; LANES]; 4];
        let mut outs = [0 as __mmask16; 4];
        let mut live = 0;
        for (l, t) in (s..(s + LANES).min(tiles)).enumerate() {
            let (img, y, x) = (t / (ty * tx), t % (ty * tx) / tx, t % tx);
            let (r, c) = (2 * y * self.step, 2 * x * self.step);
            lanes[0][l] = (img * self.src.iter().product::<usize>() + r * w + c) as i32;
            lanes[1][l] = r as i32;
            lanes[2][l] = c as i32;
            let (orow, ocol) = (2 * y * self.ostep + phase.er, 2 * x * self.ostep + phase.ec);
            lanes[3][l] = (img * self.dst.iter().product::<usize>() + orow * dw + ocol) as i32;
            live |= 1 << l;
            for (k, (i, j)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
                if 2 * y + i < phase.rows && 2 * x + j < phase.cols {
                    outs[k] |= 1 << l;
                }
            }
        }
        // SAFETY: unaligned loads of 16 i32 from arrays of 16.
        let ld = |a: &[i32; LANES]| unsafe { _mm512_loadu_si512(a.as_ptr().cast()) };
        let first = (phase.block.is_some() && live == 0xffff).then_some(lanes[3][0] as usize);
        Group { base: ld(&lanes[0]), row: ld(&lanes[1]), col: ld(&lanes[2]), live, out: ld(&lanes[3]), outs, first }
    }

    /// The transformed inputs of `groups` (np tiles) at depths `kappas`:
    /// element ξν of tile t, depth κ at v[ξν·stride + packed_b_index(depth,
    /// np, κ, t)], or at v[ξν·stride + (κ − kappas.start)·ld + t] with `rows
    /// = Some(ld)`.
    ///
    /// # Safety
    /// AVX-512; `src` holds the images the groups index; `v` points at
    /// XI·stride floats, stride ≥ packed_b_len(depth, np) (or
    /// kappas.len()·ld), that nothing else accesses meanwhile.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    unsafe fn input_tiles(
        &self,
        phase: &Phase,
        src: &[f32],
        groups: &[Group],
        kappas: std::ops::Range<usize>,
        rows: Option<usize>,
        v: *mut f32,
        stride: usize,
    ) {
        let ([_, h, w], depth, np) = (self.src, phase.taps.len(), groups.len() * LANES);
        let len = rows.map_or(packed_b_len(depth, np), |ld| ld * kappas.len());
        assert!(stride >= len && kappas.end <= depth && rows.is_none_or(|ld| ld >= np));
        let (hv, wv) = (_mm512_set1_epi32(h as i32), _mm512_set1_epi32(w as i32));
        let step = self.step as isize;
        for (kappa, &(ch, dr, dc)) in phase.taps.iter().enumerate().take(kappas.end).skip(kappas.start) {
            let plane = (ch * h * w) as i32;
            for (gi, gr) in groups.iter().enumerate() {
                // Rows and columns r·step + dr, s·step + dc of each tile, inside the map.
                let inside = |at: __m512i, off: isize, lim: __m512i| {
                    _mm512_cmplt_epu32_mask(_mm512_add_epi32(at, _mm512_set1_epi32(off as i32)), lim)
                };
                let rm = [0, 1, 2].map(|r| inside(gr.row, r * step + dr, hv) & gr.live);
                let cm = [0, 1, 2].map(|s| inside(gr.col, s * step + dc, wv));
                let mut d = [[_mm512_setzero_ps(); 3]; 3];
                for r in 0..3 {
                    for s in 0..3 {
                        let off = plane as isize + (r as isize * step + dr) * w as isize + s as isize * step + dc;
                        let idx = _mm512_add_epi32(gr.base, _mm512_set1_epi32(off as i32));
                        // SAFETY: masked lanes address (row, col) inside the map of an image of src.
                        d[r][s] = unsafe {
                            _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), rm[r] & cm[s], idx, src.as_ptr())
                        };
                    }
                }
                // Bᵀ d, then (Bᵀ d) B.
                let bt = |a: [__m512; 3]| [_mm512_sub_ps(a[0], a[1]), a[1], _mm512_sub_ps(a[2], a[1])];
                let cols = [0, 1, 2].map(|s| bt([d[0][s], d[1][s], d[2][s]]));
                let at = rows.map_or(packed_b_index(depth, np, kappa, gi * LANES), |ld| {
                    (kappa - kappas.start) * ld + gi * LANES
                });
                // ξ picks the same element of the three columns.
                #[allow(clippy::needless_range_loop)]
                for xi in 0..3 {
                    for (nu, val) in bt([cols[0][xi], cols[1][xi], cols[2][xi]]).into_iter().enumerate() {
                        // SAFETY: at + 16 ≤ len ≤ stride (asserted).
                        unsafe { _mm512_storeu_ps(v.add((3 * xi + nu) * stride + at), val) };
                    }
                }
            }
        }
    }

    /// Aᵀ M A of every tile of `groups` from the GEMMs' m[ξν·stride + o·ld +
    /// t], scattered to the destination maps at `out`.
    ///
    /// # Safety
    /// AVX-512; m holds XI·stride, stride ≥ og·ld; the groups' outputs lie in `out`.
    #[target_feature(enable = "avx512f")]
    unsafe fn output_tiles(&self, phase: &Phase, groups: &[Group], m: &[f32], stride: usize, ld: usize, out: *mut f32) {
        let [og, dh, dw] = self.dst;
        assert!(stride >= og * ld && m.len() >= XI * stride && groups.len() * LANES <= ld);
        let offs = self.out_offsets();
        // Tile i's two columns side by side.
        let [lo, hi] = side_by_side();
        // SAFETY: 16 i32 from an array of 16.
        let block =
            phase.block.map(|b| b.map(|(s0, s1, idx)| (s0, s1, unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) })));
        for o in 0..og {
            for (gi, gr) in groups.iter().enumerate() {
                // SAFETY: (3ξ + ν)·stride + o·ld + t + 16 ≤ XI·stride (asserted).
                let y = unsafe { inverse(m[o * ld + gi * LANES..].as_ptr(), stride) };
                if let (Some(block), Some(first)) = (block, gr.first) {
                    let [[y00, y01], [y10, y11]] = y;
                    let p = |a, idx, b| _mm512_permutex2var_ps(a, idx, b);
                    let srcs = [p(y00, lo, y01), p(y00, hi, y01), p(y10, lo, y11), p(y10, hi, y11)];
                    for (k, (s0, s1, idx)) in block.into_iter().enumerate() {
                        // SAFETY: the group's 64 outputs of channel o are consecutive in the maps.
                        unsafe {
                            _mm512_storeu_ps(out.add(first + o * dh * dw + LANES * k), p(srcs[s0], idx, srcs[s1]))
                        };
                    }
                    continue;
                }
                let base = _mm512_add_epi32(gr.out, _mm512_set1_epi32((o * dh * dw) as i32));
                for (i, y) in y.into_iter().enumerate() {
                    for (j, y) in y.into_iter().enumerate() {
                        let k = 2 * i + j;
                        let idx = _mm512_add_epi32(base, _mm512_set1_epi32(offs[k]));
                        // SAFETY: unmasked lanes are outputs inside the task's maps.
                        unsafe { _mm512_mask_i32scatter_ps::<4>(out, gr.outs[k], idx, y) };
                    }
                }
            }
        }
    }
}

impl Plan {
    /// Aᵀ M A of `count` groups of 16 tiles from tile t0 in all four phases
    /// at once (`joint`), phase p's element ξν of channel o, tile t at
    /// m[p·XI·stride + ξν·stride + o·ld + t]: their outputs are whole rows
    /// of the destination, stored as vectors instead of one scatter per
    /// phase and output position (convT 128→64 16→32 forward −4%).
    ///
    /// # Safety
    /// AVX-512; `joint` holds; m holds 4·XI·stride floats, stride ≥ og·ld;
    /// the groups' tiles lie in the n destination maps at `out`.
    #[target_feature(enable = "avx512f")]
    unsafe fn joint_output_tiles(&self, t0: usize, count: usize, m: &[f32], stride: usize, ld: usize, out: *mut f32) {
        let [og, dh, dw] = self.dst;
        let (ty, tx) = (dh / 4, dw / 4);
        assert!(stride >= og * ld && m.len() >= 4 * XI * stride && count * LANES <= ld);
        let [lo, hi] = side_by_side();
        let p = |a, idx, b| _mm512_permutex2var_ps(a, idx, b);
        for gi in 0..count {
            let s = t0 + gi * LANES;
            let (img, y0) = (s / (ty * tx), s % (ty * tx) / tx);
            for o in 0..og {
                // SAFETY: the group's rows of map (img, o) lie in `out`.
                let map = unsafe { out.add((img * og + o) * dh * dw + 4 * y0 * dw) };
                // Phase (ey, ex)'s outputs (i, j) of the 16 tiles.
                let ys = [0, 1, 2, 3].map(|ph| {
                    // SAFETY: ph·XI·stride + (3ξ + ν)·stride + o·ld + t + 16 ≤ 4·XI·stride (asserted).
                    unsafe { inverse(m[ph * XI * stride + o * ld + gi * LANES..].as_ptr(), stride) }
                });
                for ey in 0..2 {
                    // i picks the same output row of both phases (and the destination row).
                    #[allow(clippy::needless_range_loop)]
                    for i in 0..2 {
                        for (h, idx) in [lo, hi].into_iter().enumerate() {
                            // Tiles 8h..8h + 8, columns j side by side, for ex = 0 and 1.
                            let z = [0, 1].map(|ex| {
                                let [y0, y1] = ys[2 * ey + ex][i];
                                p(y0, idx, y1)
                            });
                            // Tiles 8h.. start at tile row 8h / tx, column 8h % tx.
                            let (row, col) = (4 * (8 * h / tx) + 2 * i + ey, 4 * (8 * h % tx));
                            // SAFETY: row < 4·(16 / tx) rows of the group, col + 32 ≤ dw.
                            unsafe {
                                _mm512_storeu_ps(map.add(row * dw + col), p(z[0], lo, z[1]));
                                _mm512_storeu_ps(map.add(row * dw + col + 16), p(z[0], hi, z[1]));
                            }
                        }
                    }
                }
            }
        }
    }

    /// G dy Gᵀ of every tile of `groups` at output channels `outs`: element
    /// ξν of tile t, channel o at m[ξν·stride + (o − outs.start)·ld + t]
    /// (outputs past the map read as zero).
    ///
    /// # Safety
    /// AVX-512; `dy` holds the destination maps the groups index; m points
    /// at XI·stride floats, stride ≥ outs.len()·ld, ld ≥ the groups' tiles,
    /// that nothing else accesses meanwhile.
    #[target_feature(enable = "avx512f")]
    unsafe fn output_grad_tiles(
        &self,
        groups: &[Group],
        dy: &[f32],
        outs: std::ops::Range<usize>,
        m: *mut f32,
        stride: usize,
        ld: usize,
    ) {
        let [_, dh, dw] = self.dst;
        assert!(stride >= outs.len() * ld && groups.len() * LANES <= ld);
        let offs = self.out_offsets();
        let g = |a: __m512, b: __m512| [a, _mm512_add_ps(a, b), b];
        for (row, o) in outs.enumerate() {
            for (gi, gr) in groups.iter().enumerate() {
                let base = _mm512_add_epi32(gr.out, _mm512_set1_epi32((o * dh * dw) as i32));
                let y = |k: usize| {
                    let idx = _mm512_add_epi32(base, _mm512_set1_epi32(offs[k]));
                    // SAFETY: unmasked lanes are outputs inside the maps of dy.
                    unsafe { _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), gr.outs[k], idx, dy.as_ptr()) }
                };
                // G along i for each j, then along j.
                let cols = [g(y(0), y(2)), g(y(1), y(3))];
                let at = row * ld + gi * LANES;
                // ξ picks the same element of both columns.
                #[allow(clippy::needless_range_loop)]
                for xi in 0..3 {
                    for (nu, val) in g(cols[0][xi], cols[1][xi]).into_iter().enumerate() {
                        // SAFETY: (3ξ + ν)·stride + at + 16 ≤ XI·stride (asserted).
                        unsafe { _mm512_storeu_ps(m.add((3 * xi + nu) * stride + at), val) };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::sgemm::tests::values;
    use super::*;
    use crate::Conv2dParams;

    /// The direct convolution in f64 (any kernel, stride and groups), and
    /// its input and weight gradients: the 3×3 Winograd tests use them too.
    pub(in crate::backend::cpu) fn direct(x: &[f32], w: &[f32], g: &ConvGeom) -> Vec<f64> {
        let mut y = vec![0.0; g.n * g.o * g.oh * g.ow];
        each_tap(g, |xi, wi, yi| y[yi] += x[xi] as f64 * w[wi] as f64);
        y
    }

    fn direct_bwd_input(dy: &[f32], w: &[f32], g: &ConvGeom) -> Vec<f64> {
        let mut dx = vec![0.0; g.n * g.c * g.h * g.w];
        each_tap(g, |xi, wi, yi| dx[xi] += dy[yi] as f64 * w[wi] as f64);
        dx
    }

    pub(in crate::backend::cpu) fn direct_weight_grad(x: &[f32], dy: &[f32], g: &ConvGeom) -> Vec<f64> {
        let mut dw = vec![0.0; g.o * g.cg() * g.kh * g.kw];
        each_tap(g, |xi, wi, yi| dw[wi] += x[xi] as f64 * dy[yi] as f64);
        dw
    }

    /// Calls f(x index, w index, y index) for every multiply-add of the forward.
    fn each_tap(g: &ConvGeom, mut f: impl FnMut(usize, usize, usize)) {
        let ([sh, sw], [ph, pw], [dh, dw]) = (g.p.stride, g.p.padding, g.p.dilation);
        let (cg, og) = (g.cg(), g.og());
        for n in 0..g.n {
            for o in 0..g.o {
                for c in 0..cg {
                    let xc = n * g.c + o / og * cg + c;
                    for oy in 0..g.oh {
                        for ox in 0..g.ow {
                            for i in 0..g.kh {
                                for j in 0..g.kw {
                                    let (iy, ix) =
                                        ((sh * oy + dh * i).wrapping_sub(ph), (sw * ox + dw * j).wrapping_sub(pw));
                                    if iy < g.h && ix < g.w {
                                        f(
                                            (xc * g.h + iy) * g.w + ix,
                                            ((o * cg + c) * g.kh + i) * g.kw + j,
                                            ((n * g.o + o) * g.oh + oy) * g.ow + ox,
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn geometries() -> Vec<ConvGeom> {
        // (n, c, h, w, o, padding): DCGAN's shapes (small batches), odd maps
        // (dummy tiles and phases of unequal length), padding 0 and 2 and
        // uneven, images that share a vector of tiles, more than one chunk,
        // depth past one GEMM block (KC = 256).
        [
            (3, 16, 8, 8, 16, [1, 1]),
            (2, 16, 16, 16, 24, [1, 1]),
            (2, 20, 11, 13, 16, [1, 1]),
            (1, 16, 12, 10, 32, [0, 2]),
            (2, 17, 9, 14, 16, [2, 0]),
            (5, 16, 4, 4, 16, [1, 1]),
            (1, 16, 64, 40, 16, [1, 1]),
            (2, 80, 8, 8, 48, [1, 1]),
            // 1536 tiles: two weight-gradient chunks; tile rows of 16.
            (6, 80, 64, 64, 48, [1, 1]),
            // Whole vectors stored in order (`block_stores`): rows of 8, 4
            // (above), 2 and 1 tiles.
            (2, 16, 32, 32, 16, [1, 1]),
            (1, 16, 32, 8, 16, [1, 1]),
            (1, 16, 64, 4, 16, [1, 1]),
            // Input gradient with every phase in one task (`grouped`),
            // phases of unequal length, two chunks; writing whole rows of
            // 32 (`joint`; 64 in the 6-image case above).
            (3, 17, 33, 30, 16, [2, 0]),
            (4, 16, 32, 32, 16, [1, 1]),
        ]
        .into_iter()
        .map(|(n, c, h, w, o, padding)| {
            let p = Conv2dParams { stride: [2, 2], padding, ..Default::default() };
            let (oh, ow) = ((h + 2 * padding[0] - 4) / 2 + 1, (w + 2 * padding[1] - 4) / 2 + 1);
            ConvGeom { n, c, h, w, o, kh: 4, kw: 4, oh, ow, p }
        })
        .collect()
    }

    #[test]
    fn forward_and_input_grad_match_the_direct_sums() {
        if !(is_x86_feature_detected!("avx512f") && super::super::sgemm::available()) {
            return;
        }
        let close = |what: &str, g: &ConvGeom, got: &[f32], want: &[f64]| {
            assert_eq!(got.len(), want.len());
            for (i, (a, b)) in got.iter().zip(want).enumerate() {
                assert!(
                    (*a as f64 - b).abs() <= 2e-6 * (16 * g.c.max(g.o)) as f64,
                    "{g:?}: {what}[{i}] = {a}, want {b}"
                );
            }
        };
        let (mut grouped, mut joint) = ([false; 2], [false; 2]);
        for g in geometries() {
            let (x, wt) = (values(g.n * g.c * g.h * g.w, 1), values(g.o * g.c * 16, 2));
            let plan = Plan::forward(&g, &wt).expect("applies");
            // SAFETY: checked above.
            let y = unsafe { plan.run(&x, g.n) };
            close("y", &g, &y, &direct(&x, &wt, &g));
            let dy = values(g.n * g.o * g.oh * g.ow, 4);
            let plan = Plan::bwd_input(&g, &wt).expect("applies");
            grouped[plan.grouped(g.n) as usize] = true;
            joint[plan.joint(g.n) as usize] = true;
            // SAFETY: checked above.
            let dx = unsafe { plan.run(&dy, g.n) };
            close("dx", &g, &dx, &direct_bwd_input(&dy, &wt, &g));
            // SAFETY: checked above.
            let dw = unsafe { weight_grad(&g, &x, &dy) }.expect("applies");
            let want = direct_weight_grad(&x, &dy, &g);
            let tol = 2e-6 * (g.n * g.oh * g.ow) as f64;
            assert!(dw.iter().zip(&want).all(|(a, b)| (*a as f64 - b).abs() <= tol), "{g:?}: dw");
        }
        assert_eq!(grouped, [true; 2], "input gradients with phases run apart and together");
        assert_eq!(joint, [true; 2], "grouped input gradients with and without whole-row stores");
    }
}
