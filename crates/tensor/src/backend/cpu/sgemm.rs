//! kiln's own f32 GEMM for AVX-512 CPUs: BLIS-style blocking around an
//! 8×48 register-tile micro-kernel (24 zmm accumulators; per k step 3 vector
//! loads of B and 8 broadcasts of A feed 24 FMAs).
//!
//! Blocking: A is packed KC columns at a time into 8-row k-major panels (a
//! panel, 8 KiB, stays in L1 while it sweeps the B block), or, row-major,
//! read in place by the kernel (8 row pointers: matmul's column tasks each
//! packed all of A; m128·k1024·n256 ran 5% faster without); B is packed into
//! a KC×NB block of 48-column k-major panels (480 KiB, in L2) that the
//! kernel streams with a software prefetch 8 k steps ahead. Deep GEMMs of
//! 256+ rows whose C fits in L2 (the big DCGAN forwards) turn that around
//! (`Tiles`): a 128-deep slice of a B panel (24 KiB) stays in L1 while the
//! A panels stream past, each adding into its C tile, held in a scratch
//! copy of C laid out tile after tile (conv 256→512 forward −7%). Packing reads
//! row- or column-major operands with 16×16 in-register transposes, so
//! transposed operands (conv weight gradients, attention) cost no more than
//! plain ones. Single-threaded: callers split the work over rayon.
//!
//! Other CPUs and f64 use `matrixmultiply` (the portable path). The
//! packers and the kernel stay out of line so profiles split time between
//! them (one call per 8×48×256 tile costs nothing measurable).

use std::arch::x86_64::*;

/// Rows of A per register tile.
const MR: usize = 8;
/// zmm vectors of B per register tile row.
const NV: usize = 3;
/// Columns of B per register tile.
const NR: usize = 16 * NV;
/// Depth of one packed block (measured best of 256/384/512 on the conv shapes).
const KC: usize = 256;
/// Columns of B per packed block.
const NB: usize = NR * 10;
/// Prefetch distance into the B panel, in k steps.
const PREFETCH: usize = 8;
/// Depth of the B-panel-outer pass over C's tiles (`Tiles`): a SUB×NR
/// slice of a B panel (24 KiB) stays in L1 while the A panels stream past.
const SUB: usize = 128;
/// Prefetch distance into the streamed A panel there, in k steps.
const PREFETCH_A: usize = 32;

/// Whether f32 GEMMs run the AVX-512 kernel: the CPU has it and
/// `KILN_CPU_GEMM=matrixmultiply` does not ask for the portable path
/// (read once per process).
pub fn available() -> bool {
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USE.get_or_init(|| {
        std::env::var_os("KILN_CPU_GEMM").is_none_or(|v| v != "matrixmultiply") && is_x86_feature_detected!("avx512f")
    })
}

/// A strided f32 matrix view: element (i, j) is at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub struct View {
    pub ptr: *const f32,
    pub rs: usize,
    pub cs: usize,
}

/// C (m×n, row stride `ldc`, unit column stride) = A·B (+ C when
/// `accumulate`). With `accumulate` false C is only written, never read.
///
/// # Safety
/// `available()` must be true; `a`, `b` must address valid m×k and k×n
/// matrices and `c` a valid m×n one that aliases neither.
pub unsafe fn sgemm(dims: [usize; 3], a: View, b: View, accumulate: bool, c: *mut f32, ldc: usize) {
    // SAFETY: forwarded.
    unsafe { strip_times(dims, Operand::View(a), BOperand::View(b), accumulate, c, ldc) }
}

/// An A packed per call (a strided view or a `PackA`) times any B operand
/// (`sgemm`, `sgemm_cols`, `sgemm_with_a`).
///
/// # Safety
/// As `sgemm`, for the operands' own addressing.
unsafe fn strip_times([m, k, n]: [usize; 3], a: Operand, b: BOperand, accumulate: bool, c: *mut f32, ldc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: row i of C is valid for n elements (caller's contract).
                unsafe { std::ptr::write_bytes(c.add(i * ldc), 0, n) };
            }
        }
        return;
    }
    // One packed B block, the packed A strip (all rows, KC deep), then C's tiles.
    let strip = padded(m) * KC;
    with_scratch(KC * NB + strip + Tiles::len(m, k, n, b), |bp| {
        // SAFETY: every packed write stays inside the scratch (panel
        // counts × KC, tile counts × MR·NR); the caller guarantees the operands.
        unsafe { blocked(m, k, n, a, b, accumulate, c, ldc, bp.add(KC * NB), bp, bp.add(KC * NB + strip)) }
    })
}

/// Rows of A rounded up to whole MR-row panels.
fn padded(m: usize) -> usize {
    m.div_ceil(MR) * MR
}

/// Runs `f` with this thread's packing scratch of at least `len` floats,
/// 64-byte aligned (a fresh buffer if the thread's is already in use).
fn with_scratch<R>(len: usize, f: impl FnOnce(*mut f32) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let run = |buf: &mut Vec<f32>| {
        // 16 floats of slack for the alignment.
        if buf.len() < len + 16 {
            buf.resize(len + 16, 0.0);
        }
        let base = buf.as_mut_ptr();
        // SAFETY: the aligned start is at most 15 floats in, leaving `len`.
        f(unsafe { base.add(base.align_offset(64)) })
    };
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => run(&mut buf),
        Err(_) => run(&mut Vec::new()),
    })
}

/// An A operand packed once, in exactly the layout `blocked` packs it per
/// call (per KC block, all MR-row panels), for GEMMs that share it: a
/// convolution's weights across its image-block tasks.
pub struct PackedA {
    data: Vec<f32>,
    m: usize,
    k: usize,
}

impl PackedA {
    /// Packs the m×k matrix `a`.
    ///
    /// # Safety
    /// `available()` must be true and `a` must address a valid m×k matrix.
    pub unsafe fn new(m: usize, k: usize, a: View) -> PackedA {
        use rayon::prelude::*;
        let m_pad = padded(m);
        // Not zeroed first: pack_a writes every element, the pad rows too.
        let mut data: Vec<f32> = Vec::with_capacity(m_pad * k);
        struct Src(View);
        // SAFETY: the view is only read, and the caller keeps it valid for this call.
        unsafe impl Sync for Src {}
        let src = Src(a);
        // KC blocks in parallel: block p0 is the m_pad·kc elements from p0·m_pad.
        data.spare_capacity_mut()[..m_pad * k].par_chunks_mut((m_pad * KC).max(1)).enumerate().for_each(
            |(blk, out)| {
                let (p0, a) = (blk * KC, &src);
                let kc = KC.min(k - p0);
                for i0 in (0..m).step_by(MR) {
                    // SAFETY: panel i0 is out[i0·kc..][..MR·kc]; `a` is the caller's.
                    unsafe { pack_a(a.0, i0, MR.min(m - i0), p0, kc, out.as_mut_ptr().add(i0 * kc).cast()) };
                }
            },
        );
        // SAFETY: the panels (MR rows each, up to m_pad) of every KC block
        // wrote all m_pad·k elements.
        unsafe { data.set_len(m_pad * k) };
        PackedA { data, m, k }
    }

    /// A matrix written straight into the packed layout (`packed_a_index`),
    /// rows past m zero.
    ///
    /// # Safety
    /// `data` holds `packed_a_len(m, k)` floats in that layout.
    pub unsafe fn from_packed(m: usize, k: usize, data: Vec<f32>) -> PackedA {
        assert_eq!(data.len(), packed_a_len(m, k));
        PackedA { data, m, k }
    }

    pub fn dims(&self) -> (usize, usize) {
        (self.m, self.k)
    }
}

/// Where the MR rows i0..i0 + MR (i0 a multiple of MR) of column p of an
/// m×k A lie in the packed layout: MR consecutive floats.
pub fn packed_a_index(m: usize, k: usize, i0: usize, p: usize) -> usize {
    let p0 = p / KC * KC;
    p0 * padded(m) + i0 * KC.min(k - p0) + (p - p0) * MR
}

/// Floats of a packed m×k A (rows rounded up to whole panels).
pub fn packed_a_len(m: usize, k: usize) -> usize {
    padded(m) * k
}

/// `sgemm` with a pre-packed A.
///
/// # Safety
/// As `sgemm`, for `b` k×n and `c` m×n with (m, k) = `a.dims()`.
pub unsafe fn sgemm_packed(a: &PackedA, n: usize, b: View, accumulate: bool, c: *mut f32, ldc: usize) {
    // SAFETY: forwarded.
    unsafe { packed_times(a, n, BOperand::View(b), accumulate, c, ldc) }
}

/// Pre-packed A times any B operand (`sgemm_packed`, `sgemm_packed_rows`).
///
/// # Safety
/// As `sgemm_packed`, for the operand's own addressing.
unsafe fn packed_times(a: &PackedA, n: usize, b: BOperand, accumulate: bool, c: *mut f32, ldc: usize) {
    let (m, k) = (a.m, a.k);
    if m == 0 || n == 0 || k == 0 {
        // SAFETY: forwarded; with k = 0 no operand is read (C is zeroed or kept).
        let none = View { ptr: a.data.as_ptr(), rs: 0, cs: 0 };
        return unsafe { sgemm([m, k, n], none, none, accumulate, c, ldc) };
    }
    with_scratch(KC * NB + Tiles::len(m, k, n, b), |bp| {
        let (a, tiles) = (Operand::Packed(a.data.as_ptr()), bp.wrapping_add(KC * NB));
        // SAFETY: as in `sgemm`; A is only read, B is the caller's.
        unsafe { blocked(m, k, n, a, b, accumulate, c, ldc, std::ptr::null_mut(), bp, tiles) }
    })
}

/// B given row by row: element (p, j) at `ptr + offsets[p] + j`. A
/// stride-1 convolution's column matrix is of this form over its padded
/// input (row (c, i, j) is the input shifted by (i, j)), so it needs no
/// im2col buffer, and no packing either: `kernel_rows` reads the rows in
/// place (a tile's rows overlap, so they stay in L1).
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    pub ptr: *const f32,
    pub offsets: &'a [usize],
}

/// `sgemm_packed` with B as `Rows` (k = `a.dims().1` offsets).
///
/// # Safety
/// As `sgemm_packed`; `ptr + offsets[p] + j` must be readable for p < k,
/// j < n.
pub unsafe fn sgemm_packed_rows(a: &PackedA, n: usize, b: Rows, accumulate: bool, c: *mut f32, ldc: usize) {
    assert!(b.offsets.len() >= a.k);
    // SAFETY: forwarded.
    unsafe { packed_times(a, n, BOperand::Rows(b), accumulate, c, ldc) }
}

/// `sgemm` with B given by columns: element (p, j) at `b.ptr +
/// b.offsets[j] + p` (the transpose of `Rows`: a stride-1 convolution's
/// column matrix as the right operand of its weight gradient, dY · colsᵀ).
///
/// # Safety
/// As `sgemm`; `ptr + offsets[j] + p` must be readable for j < n, p < k.
pub unsafe fn sgemm_cols(dims: [usize; 3], a: View, b: Rows, accumulate: bool, c: *mut f32, ldc: usize) {
    assert!(b.offsets.len() >= dims[2]);
    // SAFETY: forwarded.
    unsafe { strip_times(dims, Operand::View(a), BOperand::Cols(b), accumulate, c, ldc) }
}

/// Columns of B per packed panel: a `PackB` fills kc×PANEL blocks.
pub const PANEL: usize = NR;

/// A B operand that packs itself (a convolution's column matrix gathered
/// straight from its input, with no im2col buffer between).
pub trait PackB {
    /// Writes rows p0..p0+kc, columns j0..j0+nr (nr ≤ PANEL) of B as
    /// bp[p·PANEL + j], with zeros in columns nr..PANEL.
    ///
    /// # Safety
    /// `bp` holds kc·PANEL floats; the rows and columns lie inside B.
    unsafe fn pack(&self, p0: usize, kc: usize, j0: usize, nr: usize, bp: *mut f32);
}

/// `sgemm_packed` with a self-packing B (k×n).
///
/// # Safety
/// As `sgemm_packed`, for `b`'s own addressing.
pub unsafe fn sgemm_packed_with(a: &PackedA, n: usize, b: &dyn PackB, accumulate: bool, c: *mut f32, ldc: usize) {
    // SAFETY: forwarded.
    unsafe { packed_times(a, n, BOperand::Custom(b), accumulate, c, ldc) }
}

/// Where element (p, j) of a k×n B lies in the layout `sgemm_packed_b`
/// reads (the one `blocked` packs into): per KC-deep block of rows, the
/// NR-column panels one after another, each k-major. `packed_b_len`
/// floats hold it; a last partial panel only needs its live vectors.
pub fn packed_b_index(k: usize, n: usize, p: usize, j: usize) -> usize {
    let p0 = p / KC * KC;
    p0 * n.div_ceil(NR) * NR + j / NR * KC.min(k - p0) * NR + (p - p0) * NR + j % NR
}

/// Floats of a k×n B in `packed_b_index` layout.
pub fn packed_b_len(k: usize, n: usize) -> usize {
    k * n.div_ceil(NR) * NR
}

/// `sgemm_packed` with B already in `packed_b_index` layout (a Winograd
/// transform writes it there directly).
///
/// # Safety
/// As `sgemm_packed`, with `b` holding `packed_b_len(k, n)` floats.
pub unsafe fn sgemm_packed_b(a: &PackedA, n: usize, b: *const f32, accumulate: bool, c: *mut f32, ldc: usize) {
    // SAFETY: forwarded.
    unsafe { packed_times(a, n, BOperand::Packed(b), accumulate, c, ldc) }
}

/// Rows of A per packed panel: a `PackA` writes MR-row panels.
pub const PANEL_ROWS: usize = MR;

/// An A operand that packs itself (a convolution's column matrix, gathered
/// straight from its input, as the left operand of its weight gradient).
pub trait PackA {
    /// Writes rows 0..m, columns p0..p0+kc of A as MR-row panels: row
    /// i0 + r, column p0 + p at ap[i0·kc + p·MR + r] for each panel i0 (a
    /// multiple of MR), with zeros in the last panel's rows past m.
    ///
    /// # Safety
    /// `ap` holds ⌈m/MR⌉·MR·kc floats; the rows and columns lie inside A.
    unsafe fn pack(&self, m: usize, p0: usize, kc: usize, ap: *mut f32);
}

/// `sgemm` with a self-packing A (m×k).
///
/// # Safety
/// As `sgemm`, for `a`'s own addressing.
pub unsafe fn sgemm_with_a(dims: [usize; 3], a: &dyn PackA, b: View, accumulate: bool, c: *mut f32, ldc: usize) {
    // SAFETY: forwarded.
    unsafe { strip_times(dims, Operand::Custom(a), BOperand::View(b), accumulate, c, ldc) }
}

#[derive(Clone, Copy)]
enum BOperand<'a> {
    View(View),
    Rows(Rows<'a>),
    Cols(Rows<'a>),
    Custom(&'a dyn PackB),
    Packed(*const f32),
}

/// A as a strided view or a `PackA` (packed per call into the scratch
/// strip), or already packed.
#[derive(Clone, Copy)]
enum Operand<'a> {
    View(View),
    Custom(&'a dyn PackA),
    Packed(*const f32),
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn blocked(
    m: usize,
    k: usize,
    n: usize,
    a: Operand,
    b: BOperand,
    accumulate: bool,
    c: *mut f32,
    ldc: usize,
    ap: *mut f32,
    bp: *mut f32,
    tiles: *mut f32,
) {
    unsafe {
        let tiles = (Tiles::len(m, k, n, b) > 0).then_some(Tiles { ptr: tiles, m, n });
        if let Some(t) = tiles.as_ref().filter(|_| accumulate) {
            t.load(c, ldc);
        }
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            // Later depth blocks add onto what the first one wrote.
            let acc = accumulate || p0 > 0;
            // Row-major A is read in place by the direct pass (`ATile`);
            // the other passes take packed panels.
            let in_place = match a {
                Operand::View(a) if a.cs == 1 && tiles.is_none() && !matches!(b, BOperand::Rows(_)) => Some(a),
                _ => None,
            };
            let ap = match a {
                Operand::View(_) if in_place.is_some() => ap.cast_const(),
                Operand::View(a) => {
                    for i0 in (0..m).step_by(MR) {
                        pack_a(a, i0, MR.min(m - i0), p0, kc, ap.add(i0 * kc));
                    }
                    ap.cast_const()
                }
                Operand::Custom(a) => {
                    a.pack(m, p0, kc, ap);
                    ap.cast_const()
                }
                Operand::Packed(packed) => packed.add(p0 * padded(m)),
            };
            if let BOperand::Rows(b) = b {
                // B rows are read in place: nothing to pack.
                let offsets = b.offsets[p0..p0 + kc].as_ptr();
                for j0 in (0..n).step_by(NB) {
                    let nb = NB.min(n - j0);
                    for i0 in (0..m).step_by(MR) {
                        let mr = MR.min(m - i0);
                        for jp in 0..nb.div_ceil(NR) {
                            let (j, nr) = (j0 + jp * NR, NR.min(nb - jp * NR));
                            let (a, bj, cij) = (ap.add(i0 * kc), b.ptr.add(j), c.add(i0 * ldc + j));
                            match nr.div_ceil(16) {
                                1 => kernel_rows::<1>(kc, a, bj, offsets, cij, ldc, acc, mr, nr),
                                2 => kernel_rows::<2>(kc, a, bj, offsets, cij, ldc, acc, mr, nr),
                                _ => kernel_rows::<NV>(kc, a, bj, offsets, cij, ldc, acc, mr, nr),
                            }
                        }
                    }
                }
                continue;
            }
            for j0 in (0..n).step_by(NB) {
                let nb = NB.min(n - j0);
                let panels = nb.div_ceil(NR);
                let bp = match b {
                    BOperand::Packed(b) => b.add(packed_b_index(k, n, p0, j0)),
                    _ => {
                        for jp in 0..panels {
                            let (j, nr, out) = (j0 + jp * NR, NR.min(nb - jp * NR), bp.add(jp * kc * NR));
                            match b {
                                BOperand::View(b) => pack_b(b, p0, kc, j, nr, out),
                                BOperand::Cols(b) => pack_cols(b, p0, kc, j, nr, out),
                                BOperand::Custom(b) => b.pack(p0, kc, j, nr, out),
                                BOperand::Rows(_) | BOperand::Packed(_) => unreachable!("not packed here"),
                            }
                        }
                        bp.cast_const()
                    }
                };
                if let Some(tiles) = &tiles {
                    // B panel outer, SUB deep: the slice of the B panel stays in
                    // L1 while the A panels stream past from L2 (KC = 256 deep
                    // would not fit), each adding into its tile.
                    for q0 in (0..kc).step_by(SUB) {
                        let (sub, acc) = (SUB.min(kc - q0), acc || q0 > 0);
                        for jp in 0..panels {
                            let nr = NR.min(nb - jp * NR);
                            let b = bp.add(jp * kc * NR + q0 * NR);
                            for i0 in (0..m).step_by(MR) {
                                let (a, ct) = (ap.add(i0 * kc + q0 * MR), tiles.at(i0, j0 + jp * NR));
                                // The next call's A panel (wrapping to the first one).
                                let next = ap.wrapping_add(if i0 + MR < m { i0 + MR } else { 0 } * kc + q0 * MR);
                                match nr.div_ceil(16) {
                                    1 => kernel_tile::<1>(sub, a, next, b, ct, acc),
                                    2 => kernel_tile::<2>(sub, a, next, b, ct, acc),
                                    _ => kernel_tile::<NV>(sub, a, next, b, ct, acc),
                                }
                            }
                        }
                    }
                    continue;
                }
                for i0 in (0..m).step_by(MR) {
                    let mr = MR.min(m - i0);
                    for jp in 0..panels {
                        let nr = NR.min(nb - jp * NR);
                        let cij = c.add(i0 * ldc + j0 + jp * NR);
                        let b = bp.add(jp * kc * NR);
                        let a = match in_place {
                            Some(a) => ATile { ptr: a.ptr.add(i0 * a.rs + p0), rs: a.rs, ps: 1 },
                            None => ATile { ptr: ap.add(i0 * kc), rs: 1, ps: MR },
                        };
                        // A narrow last panel computes only its live vectors
                        // (n = 64 would otherwise spend 96 columns of work).
                        match nr.div_ceil(16) {
                            1 => kernel::<1>(kc, a, b, cij, ldc, acc, mr, nr),
                            2 => kernel::<2>(kc, a, b, cij, ldc, acc, mr, nr),
                            _ => kernel::<NV>(kc, a, b, cij, ldc, acc, mr, nr),
                        }
                    }
                }
            }
        }
        if let Some(t) = &tiles {
            t.store(c, ldc);
        }
    }
}

/// C (m × n) held as MR×NR register tiles while a GEMM runs, one tile
/// after the next down each column of tiles, for the B-panel-outer pass
/// (which walks down the columns). Written straight into C, a tile's rows
/// are ldc apart and the next tile's 8·ldc: with ldc a multiple of 1024
/// every tile maps to the same few L1 sets and its loads wait on the last
/// tile's stores (4 KiB aliasing; that pass ran 6–8% slower than before).
struct Tiles {
    ptr: *mut f32,
    m: usize,
    n: usize,
}

impl Tiles {
    /// Floats of scratch for the tiles, or 0 where the A-panel-outer pass
    /// writing C directly serves better: B read in place (`Rows`), depth
    /// under two KC blocks (the copies in and out would cost what the pass
    /// saves: a 16-deep GEMM ran 80% slower, and conv 64→128's weight
    /// gradient, 256 deep and accumulating, 3%), under 256 rows (too few A
    /// panels share each B slice: conv 64→128's forward ran 3% slower), or
    /// tiles past 768 KiB (out of L2 beside the B block: matmul 1024³ ran
    /// 4% slower).
    fn len(m: usize, k: usize, n: usize, b: BOperand) -> usize {
        let len = padded(m) * n.div_ceil(NR) * NR;
        let direct = matches!(b, BOperand::Rows(_)) || k < 2 * KC || m < 256 || len > (768 << 10) / 4;
        if direct { 0 } else { len }
    }

    /// Row i of the tile column holding C columns j0.. (a multiple of NR).
    fn at(&self, i: usize, j0: usize) -> *mut f32 {
        self.ptr.wrapping_add((j0 / NR * padded(self.m) + i) * NR)
    }

    /// Copies C into the tiles.
    ///
    /// # Safety
    /// `c` addresses a valid m×n matrix (row stride ldc); the tiles hold
    /// `len` floats.
    unsafe fn load(&self, c: *const f32, ldc: usize) {
        for j0 in (0..self.n).step_by(NR) {
            let nr = NR.min(self.n - j0);
            for i in 0..self.m {
                // SAFETY: row i of tile column j0 / NR, and nr ≤ NR columns of C.
                unsafe { std::ptr::copy_nonoverlapping(c.add(i * ldc + j0), self.at(i, j0), nr) };
            }
        }
    }

    /// Copies the tiles' live part to C.
    ///
    /// # Safety
    /// As `load`, with `c` writable and aliasing no tile.
    unsafe fn store(&self, c: *mut f32, ldc: usize) {
        for j0 in (0..self.n).step_by(NR) {
            let nr = NR.min(self.n - j0);
            for i in 0..self.m {
                // SAFETY: as in `load`.
                unsafe { std::ptr::copy_nonoverlapping(self.at(i, j0), c.add(i * ldc + j0), nr) };
            }
        }
    }
}

/// Rows i0..i0+mr, columns p0..p0+kc of A into `ap` as ap[p·MR + r]
/// (rows mr..MR zero).
#[inline(never)]
#[target_feature(enable = "avx512f")]
unsafe fn pack_a(a: View, i0: usize, mr: usize, p0: usize, kc: usize, ap: *mut f32) {
    unsafe {
        let src = a.ptr.add(i0 * a.rs + p0 * a.cs);
        let mut p = 0;
        if a.rs == 1 && a.cs != 1 {
            // Column-major A (a transposed operand): each k step is MR contiguous values.
            let mask = (1u16 << mr) - 1;
            for p in 0..kc {
                _mm512_mask_storeu_ps(ap.add(p * MR), 0xff, _mm512_maskz_loadu_ps(mask, src.add(p * a.cs)));
            }
            return;
        }
        if a.cs == 1 {
            // Row-major A: 16 k steps of every row at once, transposed in
            // registers into 8 full vectors of 2 k steps × MR rows each.
            while p + 16 <= kc {
                let mut rows = [_mm512_setzero_ps(); MR];
                for (r, row) in rows.iter_mut().enumerate().take(mr) {
                    *row = _mm512_loadu_ps(src.add(r * a.rs + p));
                }
                for (q, v) in transpose8x16(rows).iter().enumerate() {
                    _mm512_storeu_ps(ap.add((p + 2 * q) * MR), *v);
                }
                p += 16;
            }
        }
        for p in p..kc {
            for r in 0..MR {
                *ap.add(p * MR + r) = if r < mr { *src.add(r * a.rs + p * a.cs) } else { 0.0 };
            }
        }
    }
}

/// Rows p0..p0+kc, columns j0..j0+nr of B into `bp` as bp[p·NR + j]
/// (columns nr..NR zero).
#[inline(never)]
#[target_feature(enable = "avx512f")]
unsafe fn pack_b(b: View, p0: usize, kc: usize, j0: usize, nr: usize, bp: *mut f32) {
    unsafe {
        let src = b.ptr.add(p0 * b.rs + j0 * b.cs);
        let mut p = 0;
        if b.cs == 1 && nr == NR {
            for p in 0..kc {
                for v in 0..NV {
                    _mm512_storeu_ps(bp.add(p * NR + 16 * v), _mm512_loadu_ps(src.add(p * b.rs + 16 * v)));
                }
            }
            return;
        }
        if b.rs == 1 && b.cs != 1 {
            // Column-major B (a transposed operand): 16×16 blocks transposed in registers.
            while p + 16 <= kc {
                for v in 0..NV {
                    let mut rows = [_mm512_setzero_ps(); 16];
                    for (j, row) in rows.iter_mut().enumerate() {
                        if 16 * v + j < nr {
                            *row = _mm512_loadu_ps(src.add((16 * v + j) * b.cs + p));
                        }
                    }
                    let cols = transpose16(rows);
                    for (q, col) in cols.iter().enumerate() {
                        _mm512_storeu_ps(bp.add((p + q) * NR + 16 * v), *col);
                    }
                }
                p += 16;
            }
        }
        for p in p..kc {
            for j in 0..NR {
                *bp.add(p * NR + j) = if j < nr { *src.add(p * b.rs + j * b.cs) } else { 0.0 };
            }
        }
    }
}

/// `pack_b` for `BOperand::Cols`: each column is a contiguous run of k
/// values, so 16×16 blocks are transposed in registers (columns nr..NR
/// zero).
#[inline(never)]
#[target_feature(enable = "avx512f")]
unsafe fn pack_cols(b: Rows, p0: usize, kc: usize, j0: usize, nr: usize, bp: *mut f32) {
    let col = |j: usize| b.ptr.wrapping_add(b.offsets[j0 + j] + p0);
    let mut p = 0;
    while p + 16 <= kc {
        for v in 0..NV {
            let mut rows = [_mm512_setzero_ps(); 16];
            for (j, row) in rows.iter_mut().enumerate() {
                if 16 * v + j < nr {
                    // SAFETY: column 16v + j < nr is readable for kc values from p0.
                    *row = unsafe { _mm512_loadu_ps(col(16 * v + j).add(p)) };
                }
            }
            for (q, c) in transpose16(rows).iter().enumerate() {
                // SAFETY: the panel has kc·NR floats.
                unsafe { _mm512_storeu_ps(bp.add((p + q) * NR + 16 * v), *c) };
            }
        }
        p += 16;
    }
    for p in p..kc {
        for j in 0..NR {
            // SAFETY: as above.
            unsafe { *bp.add(p * NR + j) = if j < nr { *col(j).add(p) } else { 0.0 } };
        }
    }
}

/// sum[r][v] += A[r] · B[v] for one k step from a packed A panel: the
/// register tile's update in `kernel_tile` and `kernel_rows`.
macro_rules! rank1 {
    ($sum:expr, $a:expr, $bv:expr) => {
        for (r, row) in $sum.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*$a.add(r));
            for (acc, b) in row.iter_mut().zip(&$bv) {
                *acc = _mm512_fmadd_ps(av, *b, *acc);
            }
        }
    };
}

/// Writes (or with `acc` adds) the mr×nr corner of register tile `sum`
/// to C: a macro, as a function taking the tile was not inlined (its
/// accumulators went through the stack).
macro_rules! store_tile {
    ($sum:expr, $c:expr, $ldc:expr, $acc:expr, $mr:expr, $nr:expr) => {
        for (r, row) in $sum.iter().enumerate().take($mr) {
            let out = $c.add(r * $ldc);
            for (v, s) in row.iter().enumerate() {
                let lo = 16 * v;
                if $nr <= lo {
                    break;
                }
                let mask: __mmask16 = if $nr - lo >= 16 { 0xffff } else { (1 << ($nr - lo)) - 1 };
                let p = out.add(lo);
                let val = if $acc { _mm512_add_ps(*s, _mm512_maskz_loadu_ps(mask, p)) } else { *s };
                _mm512_mask_storeu_ps(p, mask, val);
            }
        }
    };
}

/// Where a register tile's rows of A are: row r, step p at ptr + r·rs +
/// p·ps. A packed panel has rs 1, ps MR; a row-major A read in place
/// (no packing) rs = its row stride, ps 1.
#[derive(Clone, Copy)]
struct ATile {
    ptr: *const f32,
    rs: usize,
    ps: usize,
}

/// C tile (mr×nr of an MR×NR tile, nr ≤ 16·`V`) = A·Bp over kc steps (+
/// C if `acc`), reading only the first `V` vectors of each packed B row.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const V: usize>(
    kc: usize,
    a: ATile,
    bp: *const f32,
    c: *mut f32,
    ldc: usize,
    acc: bool,
    mr: usize,
    nr: usize,
) {
    unsafe {
        // Rows past mr (never stored) repeat row mr − 1: in place, A ends there.
        let rows: [*const f32; MR] = std::array::from_fn(|r| a.ptr.add(r.min(mr - 1) * a.rs));
        let mut sum = [[_mm512_setzero_ps(); V]; MR];
        let mut b = bp;
        for p in 0..kc {
            for v in 0..V {
                // Past the panel's end this only touches the next panel or scratch.
                _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(PREFETCH * NR + 16 * v).cast());
            }
            let mut bv = [_mm512_setzero_ps(); V];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(b.add(16 * v));
            }
            for (row, at) in sum.iter_mut().zip(rows) {
                let av = _mm512_set1_ps(*at.add(p * a.ps));
                for (acc, b) in row.iter_mut().zip(&bv) {
                    *acc = _mm512_fmadd_ps(av, *b, *acc);
                }
            }
            b = b.add(NR);
        }
        store_tile!(sum, c, ldc, acc, mr, nr);
    }
}

/// `kernel` for the B-panel-outer pass: the first `V` vectors of each row
/// of tile `c` (`Tiles`) = Ap·Bp over kc steps (+ the tile if `acc`).
/// B's slice stays in L1; A streams from L2, prefetched PREFETCH_A steps
/// ahead, into `a_next` (the panel the next call reads) near the end.
#[inline(never)]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_tile<const V: usize>(
    kc: usize,
    ap: *const f32,
    a_next: *const f32,
    bp: *const f32,
    c: *mut f32,
    acc: bool,
) {
    unsafe {
        let mut sum = [[_mm512_setzero_ps(); V]; MR];
        let (mut a, mut b) = (ap, bp);
        let split = kc.saturating_sub(PREFETCH_A);
        for (steps, mut pf) in [(split, ap.wrapping_add(PREFETCH_A * MR)), (kc - split, a_next)] {
            for _ in 0..steps {
                // A prefetch only hints: a pointer past the scratch never faults.
                _mm_prefetch::<_MM_HINT_T0>(pf.cast());
                pf = pf.wrapping_add(MR);
                let mut bv = [_mm512_setzero_ps(); V];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(b.add(16 * v));
                }
                rank1!(sum, a, bv);
                a = a.add(MR);
                b = b.add(NR);
            }
        }
        store_tile!(sum, c, NR, acc, MR, 16 * V);
    }
}

/// `kernel` with B's rows read in place (`Rows`, no packed panel): k step
/// p reads row `b + offsets[p]`, its last vector masked to nr (the rows
/// are shifted copies of one padded image, so a tile's B stays in L1).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_rows<const V: usize>(
    kc: usize,
    ap: *const f32,
    b: *const f32,
    offsets: *const usize,
    c: *mut f32,
    ldc: usize,
    acc: bool,
    mr: usize,
    nr: usize,
) {
    unsafe {
        let last: __mmask16 = if nr >= 16 * V { 0xffff } else { (1 << (nr - 16 * (V - 1))) - 1 };
        let mut sum = [[_mm512_setzero_ps(); V]; MR];
        let mut a = ap;
        for p in 0..kc {
            let row = b.add(*offsets.add(p));
            let mut bv = [_mm512_setzero_ps(); V];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = if v + 1 < V {
                    _mm512_loadu_ps(row.add(16 * v))
                } else {
                    _mm512_maskz_loadu_ps(last, row.add(16 * v))
                };
            }
            rank1!(sum, a, bv);
            a = a.add(MR);
        }
        store_tile!(sum, c, ldc, acc, mr, nr);
    }
}

/// The micro-kernel's own rate: `reps` passes of one kc-deep A panel over
/// `panels` packed B panels, each adding into its C tile, with every
/// operand already in this thread's caches (the A panel and the C tiles in
/// L1; B in L1 for one panel, in L2 for ten, as in a big GEMM's inner loop).
/// No packing and no edges: the ceiling the GEMMs' kernel time runs at.
/// Returns the FLOPs done, or `None` where this kernel is not used.
pub fn kernel_sweep(kc: usize, panels: usize, reps: usize) -> Option<f64> {
    if !available() {
        return None;
    }
    thread_local! {
        // Filled once per size, so a timed call runs the kernel only.
        static BUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // The A panel, the B panels with PREFETCH steps of slack, the C tiles;
    // 16 floats more to start 64-byte aligned, as the packing scratch does.
    let (a_len, b_len) = (kc * MR, (kc * panels + PREFETCH) * NR);
    let len = a_len + b_len + MR * NR * panels + 16;
    BUF.with_borrow_mut(|buf| {
        if buf.len() != len {
            *buf = vec![0.25; len];
        }
        let at = buf.as_ptr().align_offset(64);
        let (a, rest) = buf[at..].split_at_mut(a_len);
        let (b, c) = rest.split_at_mut(b_len);
        for _ in 0..reps {
            for jp in 0..panels {
                // SAFETY: the CPU check is above; A holds kc·MR floats, B
                // panel jp kc·NR (+ prefetch slack) from jp·kc·NR, C tile jp
                // MR·NR from jp·MR·NR.
                unsafe {
                    let (bp, cp) = (b.as_ptr().add(jp * kc * NR), c.as_mut_ptr().add(jp * MR * NR));
                    kernel::<NV>(kc, ATile { ptr: a.as_ptr(), rs: 1, ps: MR }, bp, cp, NR, true, MR, NR);
                }
            }
        }
        // Keep C's sums bounded across calls (they are never read).
        c.fill(0.0);
    });
    Some((2 * reps * panels * kc * MR * NR) as f64)
}

/// 8×16 transpose in registers: out[j] holds columns 2j and 2j + 1 of the
/// 8 rows, as [r0[2j], …, r7[2j], r0[2j+1], …, r7[2j+1]] (an A panel's
/// layout for 2 k steps).
#[target_feature(enable = "avx512f")]
pub(super) fn transpose8x16(r: [__m512; 8]) -> [__m512; 8] {
    let pd = _mm512_castps_pd;
    let ps = _mm512_castpd_ps;
    // Per 128-bit lane L, u[m] = rows 0–3 at column 4L + m and w[m] = rows 4–7.
    let quads = |a: __m512, b: __m512, c: __m512, d: __m512| {
        let (t0, t1) = (_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
        let (t2, t3) = (_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
        [
            ps(_mm512_unpacklo_pd(pd(t0), pd(t2))),
            ps(_mm512_unpackhi_pd(pd(t0), pd(t2))),
            ps(_mm512_unpacklo_pd(pd(t1), pd(t3))),
            ps(_mm512_unpackhi_pd(pd(t1), pd(t3))),
        ]
    };
    let u = quads(r[0], r[1], r[2], r[3]);
    let w = quads(r[4], r[5], r[6], r[7]);
    // lo[m] = all 8 rows at columns m and 4 + m; hi[m] at 8 + m and 12 + m.
    let mut lo = [_mm512_setzero_ps(); 4];
    let mut hi = [_mm512_setzero_ps(); 4];
    for m in 0..4 {
        let (a, b) = (_mm512_shuffle_f32x4::<0x44>(u[m], w[m]), _mm512_shuffle_f32x4::<0xEE>(u[m], w[m]));
        lo[m] = _mm512_shuffle_f32x4::<0xD8>(a, a);
        hi[m] = _mm512_shuffle_f32x4::<0xD8>(b, b);
    }
    let (low, high) = (_mm512_shuffle_f32x4::<0x44>, _mm512_shuffle_f32x4::<0xEE>);
    [
        low(lo[0], lo[1]),
        low(lo[2], lo[3]),
        high(lo[0], lo[1]),
        high(lo[2], lo[3]),
        low(hi[0], hi[1]),
        low(hi[2], hi[3]),
        high(hi[0], hi[1]),
        high(hi[2], hi[3]),
    ]
}

/// 16×16 transpose in registers: lane i of out[j] = lane j of r[i].
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    let mut t = [_mm512_setzero_ps(); 16];
    for q in 0..8 {
        t[2 * q] = _mm512_unpacklo_ps(r[2 * q], r[2 * q + 1]);
        t[2 * q + 1] = _mm512_unpackhi_ps(r[2 * q], r[2 * q + 1]);
    }
    // u[4g + c] holds, per 128-bit lane l, column 4l + c of rows 4g..4g+4.
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (lo01, hi01, lo23, hi23) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
        u[4 * g] = _mm512_shuffle_ps::<0x44>(lo01, lo23);
        u[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(lo01, lo23);
        u[4 * g + 2] = _mm512_shuffle_ps::<0x44>(hi01, hi23);
        u[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(hi01, hi23);
    }
    let mut out = [_mm512_setzero_ps(); 16];
    for c in 0..4 {
        let v0 = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
        let v1 = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
        let w0 = _mm512_shuffle_f32x4::<0xDD>(u[c], u[4 + c]);
        let w1 = _mm512_shuffle_f32x4::<0xDD>(u[8 + c], u[12 + c]);
        out[c] = _mm512_shuffle_f32x4::<0x88>(v0, v1);
        out[c + 8] = _mm512_shuffle_f32x4::<0xDD>(v0, v1);
        out[c + 4] = _mm512_shuffle_f32x4::<0x88>(w0, w1);
        out[c + 12] = _mm512_shuffle_f32x4::<0xDD>(w0, w1);
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// C = A·B (+ C) in f64 from the same strided f32 data.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        (rsa, csa): (usize, usize),
        b: &[f32],
        (rsb, csb): (usize, usize),
        c0: &[f32],
        acc: bool,
    ) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|p| a[i * rsa + p * csa] as f64 * b[p * rsb + j * csb] as f64).sum();
                out[i * n + j] = s + if acc { c0[i * n + j] as f64 } else { 0.0 };
            }
        }
        out
    }

    /// `len` deterministic values in [−0.5, 0.5) (xorshift).
    pub(in crate::backend::cpu) fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    fn check(
        m: usize,
        k: usize,
        n: usize,
        ta: bool,
        tb: bool,
        acc: bool,
        seed: u64,
    ) -> std::result::Result<(), String> {
        let (a, b) = (values(m * k, seed), values(k * n, seed + 1));
        let sa = if ta { (1, m) } else { (k, 1) };
        let sb = if tb { (1, k) } else { (n, 1) };
        // NaN in C must be ignored when not accumulating.
        let c0 = if acc { values(m * n, seed + 2) } else { vec![f32::NAN; m * n] };
        let mut c = c0.clone();
        let (va, vb) = (View { ptr: a.as_ptr(), rs: sa.0, cs: sa.1 }, View { ptr: b.as_ptr(), rs: sb.0, cs: sb.1 });
        // SAFETY: the views describe exactly the vectors above.
        unsafe { sgemm([m, k, n], va, vb, acc, c.as_mut_ptr(), n) };
        // The same product with A packed once up front.
        let mut c_packed = c0.clone();
        // SAFETY: as above.
        unsafe { sgemm_packed(&PackedA::new(m, k, va), n, vb, acc, c_packed.as_mut_ptr(), n) };
        // And with B laid out in advance (`packed_b_index`).
        let mut b_packed = vec![f32::NAN; packed_b_len(k, n)];
        for p in 0..k {
            for j in 0..n {
                b_packed[packed_b_index(k, n, p, j)] = b[p * sb.0 + j * sb.1];
            }
        }
        // A last partial panel's pad columns stay NaN: they must not reach C.
        let mut c_packed_b = c0.clone();
        // SAFETY: as above.
        unsafe { sgemm_packed_b(&PackedA::new(m, k, va), n, b_packed.as_ptr(), acc, c_packed_b.as_mut_ptr(), n) };
        let want = reference(m, k, n, &a, sa, &b, sb, &c0, acc);
        for (what, c) in [("sgemm", &c), ("sgemm_packed", &c_packed), ("sgemm_packed_b", &c_packed_b)] {
            agrees(&format!("{what} {m}x{k}x{n} ta {ta} tb {tb} acc {acc}"), c, &want, k)?;
        }
        Ok(())
    }

    /// Every element of `got` within the f32 rounding of a depth-k sum of `want`.
    fn agrees(what: &str, got: &[f32], want: &[f64], k: usize) -> std::result::Result<(), String> {
        let tol = 1e-6 * (k as f64 + 1.0);
        match got.iter().zip(want).position(|(&g, &w)| (g as f64 - w).abs() > tol) {
            Some(i) => Err(format!("{what}: C[{i}] = {}, want {}", got[i], want[i])),
            None => Ok(()),
        }
    }

    #[test]
    fn tile_and_block_edges() {
        if !available() {
            return;
        }
        // Every edge: partial register tiles, KC and NB boundaries, k below one transpose block, k = 0.
        for &(m, k, n) in &[
            (1, 1, 1),
            (8, 16, 48),
            (9, 17, 49),
            (7, 257, 481),
            (64, 513, 100),
            (130, 300, 129),
            (3, 0, 5),
            (17, 15, 3),
            // The B-panel-outer pass over C's tiles (m ≥ 256, k ≥ 512):
            // partial A panel, KC and SUB edges, a 1-vector last panel, NB.
            (257, 520, 100),
            (256, 512, 530),
        ] {
            for (ta, tb, acc) in [(false, false, false), (true, false, true), (false, true, false), (true, true, true)]
            {
                check(m, k, n, ta, tb, acc, (m * 31 + k * 7 + n) as u64).unwrap();
            }
        }
    }

    /// B as `Rows` (read in place by `kernel_rows`, last vector masked) and
    /// as `Cols` (its transpose), over one buffer whose rows overlap like a
    /// convolution's shifted rows; against the same B copied dense.
    fn check_rows(m: usize, k: usize, n: usize, acc: bool, seed: u64) -> std::result::Result<(), String> {
        // Row p starts at 3p + (p % 5): rows overlap and are unaligned.
        let offsets: Vec<usize> = (0..k.max(n)).map(|p| 3 * p + p % 5).collect();
        let len = offsets.last().map_or(0, |o| o + k.max(n));
        // The buffer ends where the last row (or column) does.
        let buf = values(len, seed);
        let dense: Vec<f32> = (0..k).flat_map(|p| (0..n).map(|j| buf[offsets[p] + j]).collect::<Vec<_>>()).collect();
        let dense_t: Vec<f32> = (0..k).flat_map(|p| (0..n).map(|j| buf[offsets[j] + p]).collect::<Vec<_>>()).collect();
        let a = values(m * k, seed + 1);
        let c0 = if acc { values(m * n, seed + 2) } else { vec![f32::NAN; m * n] };
        let va = View { ptr: a.as_ptr(), rs: k, cs: 1 };
        let rows = Rows { ptr: buf.as_ptr(), offsets: &offsets };
        let (mut c_rows, mut c_cols) = (c0.clone(), c0.clone());
        // SAFETY: every row and column read lies inside `buf` (len above).
        unsafe {
            sgemm_packed_rows(&PackedA::new(m, k, va), n, rows, acc, c_rows.as_mut_ptr(), n);
            sgemm_cols([m, k, n], va, rows, acc, c_cols.as_mut_ptr(), n);
        }
        for (what, got, b) in [("rows", &c_rows, &dense), ("cols", &c_cols, &dense_t)] {
            let want = reference(m, k, n, &a, (k, 1), b, (n, 1), &c0, acc);
            agrees(&format!("{what} {m}x{k}x{n} acc {acc}"), got, &want, k)?;
        }
        Ok(())
    }

    #[test]
    fn kernel_sweep_counts_its_flops() {
        let want = available().then_some((2 * 3 * 2 * 16 * MR * NR) as f64);
        assert_eq!(kernel_sweep(16, 2, 3), want);
        // A second size refills the thread's buffer.
        assert_eq!(kernel_sweep(8, 1, 1).is_some(), available());
    }

    #[test]
    fn rows_and_cols_operands() {
        if !available() {
            return;
        }
        // Narrow last panels (1, 2, 3 vectors, partial), NB and KC edges.
        for &(m, k, n) in &[(1, 1, 1), (8, 20, 16), (9, 33, 17), (5, 300, 40), (16, 257, 530), (3, 0, 7)] {
            for acc in [false, true] {
                check_rows(m, k, n, acc, (m + 3 * k + 7 * n) as u64).unwrap();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn matches_f64(m in 1usize..40, k in 0usize..300, n in 1usize..120, ta: bool, tb: bool, acc: bool, seed in 0u64..1000) {
            if available() {
                check(m, k, n, ta, tb, acc, seed).map_err(TestCaseError::fail)?;
            }
        }
    }
}
