// Unary and broadcasting binary ops over strided views; output dense.
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn f32_inf() -> f32 {
    return bitcast<f32>(0x7f800000u);
}

fn f32_nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), odd extension.
fn erf_f32(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t
        * exp(-x * x);
    return sign(x) * y;
}

fn sigmoid_f32(x: f32) -> f32 {
    // exp of a non-positive number only: no overflow.
    let e = exp(-abs(x));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}

fn pow_f32(x: f32, p: f32) -> f32 {
    if (p == 0.0) {
        return 1.0;
    }
    if (x == 0.0) {
        return select(0.0, f32_inf(), p < 0.0);
    }
    if (x > 0.0) {
        return exp2(p * log2(x));
    }
    if (floor(p) != p) {
        return f32_nan();
    }
    let m = exp2(p * log2(-x));
    let odd = abs(p % 2.0) == 1.0;
    return select(m, -m, odd);
}

// Op codes match `unary_code` in backend/gpu/elementwise.rs. NaN behaves as on
// the CPU: relu and clamp keep it, sign maps it to 0.
fn unary_f32(op: u32, x: f32, p0: f32, p1: f32) -> f32 {
    switch op {
        case 0u: { return -x; }
        case 1u: { return abs(x); }
        case 2u: { return select(select(0.0, -1.0, x < 0.0), 1.0, x > 0.0); }
        case 3u: { return select(0.0, 1.0, x > 0.0); }
        case 4u: { return exp(x); }
        case 5u: { return log(x); }
        case 6u: { return sqrt(x); }
        case 7u: { return inverseSqrt(x); }
        case 8u: { return x * x; }
        case 9u: { return 1.0 / x; }
        case 10u: { return tanh(clamp(x, -15.0, 15.0)); }
        case 11u: { return sigmoid_f32(x); }
        case 12u: { return select(0.0, x, x > 0.0 || is_nan(x)); }
        case 13u: { return sin(x); }
        case 14u: { return cos(x); }
        case 15u: { return erf_f32(x); }
        case 16u: { return x * sigmoid_f32(x); }
        case 17u: { return 0.5 * x * (1.0 + erf_f32(x * 0.70710678118654752)); }
        case 18u: {
            let u = 0.79788456080286536 * (x + 0.044715 * x * x * x);
            return 0.5 * x * (1.0 + tanh(clamp(u, -15.0, 15.0)));
        }
        case 19u: { return pow_f32(x, p0); }
        case 20u: { return x * p0 + p1; }
        case 21u: { return select(x * p0, x, x > 0.0); }
        case 22u: { return select(p0 * (exp(x) - 1.0), x, x > 0.0); }
        case 23u: {
            let bx = p0 * x;
            return select(log(1.0 + exp(bx)) / p0, x, bx > p1);
        }
        case 24u: { return select(min(max(x, p0), p1), x, is_nan(x)); }
        case 25u: { return select(p0, 1.0, x > 0.0); }
        case 26u: {
            let s = sigmoid_f32(x);
            return s * (1.0 + x * (1.0 - s));
        }
        default: { return f32_nan(); }
    }
}

fn binary_f32(op: u32, x: f32, y: f32) -> f32 {
    switch op {
        case 0u: { return x + y; }
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        case 3u: { return x / y; }
        case 4u: { return select(max(x, y), x + y, is_nan(x) || is_nan(y)); }
        case 5u: { return select(min(x, y), x + y, is_nan(x) || is_nan(y)); }
        case 6u: { return select(0.0, 1.0, x == y); }
        case 7u: { return select(0.0, 1.0, x != y); }
        case 8u: { return select(0.0, 1.0, x < y); }
        case 9u: { return select(0.0, 1.0, x <= y); }
        case 10u: { return select(0.0, 1.0, x > y); }
        case 11u: { return select(0.0, 1.0, x >= y); }
        case 12u: { return pow_f32(x, y); }
        default: { return f32_nan(); }
    }
}

// P: n, rank, op, p0, p1, shape[8], strides[8], offset
@compute @workgroup_size(256)
fn elementwise_unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let i = wg_flat(wid, nwg) * 256u + li;
    if (i >= P[0]) {
        return;
    }
    let x = a[P[21] + strided_at(i, P[1], 5u, 13u)];
    out[i] = unary_f32(P[2], x, pf(3u), pf(4u));
}

// P: n, rank, op, shape[8], a strides[8], a offset, b strides[8], b offset
@compute @workgroup_size(256)
fn elementwise_binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let i = wg_flat(wid, nwg) * 256u + li;
    if (i >= P[0]) {
        return;
    }
    let x = a[P[19] + strided_at(i, P[1], 3u, 11u)];
    let y = b[P[28] + strided_at(i, P[1], 3u, 20u)];
    out[i] = binary_f32(P[2], x, y);
}

// out = cond != 0 ? b : c.
// P: n, rank, shape[8], cond strides[8], offset, b strides[8], offset, c strides[8], offset
@compute @workgroup_size(256)
fn elementwise_where(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let i = wg_flat(wid, nwg) * 256u + li;
    if (i >= P[0]) {
        return;
    }
    let cond = a[P[18] + strided_at(i, P[1], 2u, 10u)];
    let x = b[P[27] + strided_at(i, P[1], 2u, 19u)];
    let y = c[P[36] + strided_at(i, P[1], 2u, 28u)];
    out[i] = select(y, x, cond != 0.0);
}
