//! The `Tensor` handle: a cheap-to-clone Arc of (storage, layout, recorded op).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use crate::backend::Storage;
use crate::error::{arg_err, shape_err};
use crate::op::Op;
use crate::{DType, Device, Error, Layout, Result, Rng, WithDType, autograd};

/// Unique per tensor node; gradients are keyed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(usize);

impl TensorId {
    fn fresh() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

pub(crate) struct TensorInner {
    id: TensorId,
    storage: Arc<RwLock<Storage>>,
    layout: Layout,
    dtype: DType,
    device: Device,
    op: Option<Op>,
    is_var: bool,
}

#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<TensorInner>);

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor[{:?}, {:?}, {:?}", self.shape(), self.dtype(), self.device())?;
        if self.numel() <= 16 {
            write!(f, ", {:?}", self.to_vec_f64())?;
        }
        write!(f, "]")
    }
}

impl Tensor {
    // ---- construction -------------------------------------------------

    pub(crate) fn build(storage: Storage, layout: Layout, op: Option<Op>, is_var: bool) -> Tensor {
        Tensor(Arc::new(TensorInner {
            id: TensorId::fresh(),
            dtype: storage.dtype(),
            device: storage.device(),
            storage: Arc::new(RwLock::new(storage)),
            layout,
            op,
            is_var,
        }))
    }

    /// A new tensor from fresh dense storage, recording `op` only when grad
    /// mode is on and some input tracks gradients.
    pub(crate) fn from_op(storage: Storage, shape: &[usize], op: impl FnOnce() -> Op) -> Tensor {
        let layout = Layout::contiguous(shape);
        Self::build(storage, layout, None, false).with_op(op)
    }

    /// A view sharing this tensor's storage under another layout.
    pub(crate) fn view(&self, layout: Layout, op: impl FnOnce() -> Op) -> Tensor {
        Tensor(Arc::new(TensorInner {
            id: TensorId::fresh(),
            storage: self.0.storage.clone(),
            layout,
            dtype: self.dtype(),
            device: self.device(),
            op: None,
            is_var: false,
        }))
        .with_op(op)
    }

    pub(crate) fn with_op(mut self, op: impl FnOnce() -> Op) -> Tensor {
        if !autograd::is_grad_enabled() {
            return self;
        }
        let op = op();
        if op.inputs().iter().any(|t| t.tracks_grad()) {
            Arc::get_mut(&mut self.0).expect("fresh tensor is unshared").op = Some(op);
        }
        self
    }

    pub(crate) fn from_storage(storage: Storage, shape: &[usize]) -> Tensor {
        Self::build(storage, Layout::contiguous(shape), None, false)
    }

    fn check_len(op: &'static str, len: usize, shape: &[usize]) -> Result<()> {
        let n = checked_numel(op, shape)?;
        if n != len {
            return Err(shape_err(op, format!("{len} elements do not fill shape {shape:?} ({n} elements)")));
        }
        Ok(())
    }

    /// From host values of any element type (copies).
    pub fn from_slice<T: WithDType>(data: &[T], shape: &[usize], device: Device) -> Result<Tensor> {
        Self::check_len("from_slice", data.len(), shape)?;
        Self::from_f64_fn(shape, T::DTYPE, device, |i| data[i].to_f64())
    }

    pub fn from_vec<T: WithDType>(data: Vec<T>, shape: &[usize], device: Device) -> Result<Tensor> {
        Self::from_slice(&data, shape, device)
    }

    /// From f64 values, converted to `dtype`.
    pub fn from_f64(data: &[f64], shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Self::check_len("from_f64", data.len(), shape)?;
        Self::from_f64_fn(shape, dtype, device, |i| data[i])
    }

    fn from_f64_fn(shape: &[usize], dtype: DType, device: Device, f: impl Fn(usize) -> f64) -> Result<Tensor> {
        let n = checked_numel("tensor", shape)?;
        Ok(Self::from_storage(Storage::from_f64_fn(n, dtype, device, f)?, shape))
    }

    pub fn zeros(shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Self::full(0.0, shape, dtype, device)
    }

    pub fn ones(shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Self::full(1.0, shape, dtype, device)
    }

    pub fn full(value: f64, shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Self::from_f64_fn(shape, dtype, device, |_| value)
    }

    pub fn zeros_like(&self) -> Result<Tensor> {
        Self::zeros(self.shape(), self.dtype(), self.device())
    }

    pub fn ones_like(&self) -> Result<Tensor> {
        Self::ones(self.shape(), self.dtype(), self.device())
    }

    pub fn full_like(&self, value: f64) -> Result<Tensor> {
        Self::full(value, self.shape(), self.dtype(), self.device())
    }

    /// `[start, end)` in steps of `step` (torch.arange).
    pub fn arange(start: f64, end: f64, step: f64, dtype: DType, device: Device) -> Result<Tensor> {
        if step == 0.0 || !((end - start) / step).is_finite() {
            return Err(arg_err("arange", format!("invalid range {start}..{end} step {step}")));
        }
        let n = ((end - start) / step).ceil().max(0.0);
        if n > (1u64 << 40) as f64 {
            return Err(arg_err("arange", format!("{start}..{end} step {step} has too many elements")));
        }
        let n = n as usize;
        Self::from_f64_fn(&[n], dtype, device, |i| start + i as f64 * step)
    }

    /// Standard-normal draws scaled to N(mean, std²), from `rng` (host side,
    /// so every backend gets the same numbers for the same seed).
    pub fn randn(shape: &[usize], mean: f64, std: f64, dtype: DType, device: Device, rng: &mut Rng) -> Result<Tensor> {
        let v: Vec<f64> = (0..checked_numel("randn", shape)?).map(|_| mean + std * rng.normal()).collect();
        Self::from_f64(&v, shape, dtype, device)
    }

    /// Uniform draws in [lo, hi).
    pub fn uniform(shape: &[usize], lo: f64, hi: f64, dtype: DType, device: Device, rng: &mut Rng) -> Result<Tensor> {
        let v: Vec<f64> = (0..checked_numel("uniform", shape)?).map(|_| lo + (hi - lo) * rng.uniform()).collect();
        Self::from_f64(&v, shape, dtype, device)
    }

    /// Uniform draws in [0, 1) (torch.rand).
    pub fn rand(shape: &[usize], dtype: DType, device: Device, rng: &mut Rng) -> Result<Tensor> {
        Self::uniform(shape, 0.0, 1.0, dtype, device, rng)
    }

    // ---- accessors ----------------------------------------------------

    pub fn id(&self) -> TensorId {
        self.0.id
    }
    pub fn shape(&self) -> &[usize] {
        self.0.layout.shape()
    }
    pub fn dims(&self) -> &[usize] {
        self.shape()
    }
    pub fn rank(&self) -> usize {
        self.0.layout.rank()
    }
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    pub fn device(&self) -> Device {
        self.0.device
    }
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }
    pub(crate) fn op(&self) -> Option<&Op> {
        self.0.op.as_ref()
    }
    pub fn is_var(&self) -> bool {
        self.0.is_var
    }
    /// True when gradients flow to or through this tensor.
    pub fn tracks_grad(&self) -> bool {
        self.0.is_var || self.0.op.is_some()
    }

    pub(crate) fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        // A poisoned lock only means another thread panicked mid-write of a
        // whole-buffer replace; the data is still a valid buffer.
        self.0.storage.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn storage_mut(&self) -> std::sync::RwLockWriteGuard<'_, Storage> {
        self.0.storage.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether two tensors view the same buffer.
    pub(crate) fn same_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    /// Size of `dim` (torch's `size(dim)`), or an error when out of range.
    pub fn size(&self, dim: usize) -> Result<usize> {
        self.dim_size("size", dim)
    }

    /// Size of `dim`; the error names `op`.
    pub(crate) fn dim_size(&self, op: &'static str, dim: usize) -> Result<usize> {
        self.shape()
            .get(dim)
            .copied()
            .ok_or_else(|| arg_err(op, format!("dim {dim} is out of range for shape {:?}", self.shape())))
    }

    // ---- host transfer ------------------------------------------------

    /// All elements in row-major order as f64 (any dtype). Reading from a
    /// GPU waits for its queue; a device failure there panics (use
    /// `try_to_vec_f64` or `to_vec` for a `Result`).
    pub fn to_vec_f64(&self) -> Vec<f64> {
        self.try_to_vec_f64().unwrap_or_else(|e| panic!("to_vec_f64: {e}"))
    }

    pub fn try_to_vec_f64(&self) -> Result<Vec<f64>> {
        self.storage().to_f64_vec(self.layout())
    }

    /// All elements in row-major order; `T` must be the tensor's dtype.
    pub fn to_vec<T: WithDType>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype() {
            return Err(Error::DTypeMismatch { op: "to_vec", lhs: self.dtype(), rhs: T::DTYPE });
        }
        Ok(self.try_to_vec_f64()?.into_iter().map(T::from_f64).collect())
    }

    /// The single element of a one-element tensor, as f64.
    pub fn to_scalar(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(shape_err("to_scalar", format!("tensor of shape {:?} is not a scalar", self.shape())));
        }
        Ok(self.try_to_vec_f64()?[0])
    }

    // ---- graph --------------------------------------------------------

    /// Same data, cut from the graph.
    pub fn detach(&self) -> Tensor {
        Tensor(Arc::new(TensorInner {
            id: TensorId::fresh(),
            storage: self.0.storage.clone(),
            layout: self.0.layout.clone(),
            dtype: self.dtype(),
            device: self.device(),
            op: None,
            is_var: false,
        }))
    }

    /// A dense copy (recorded: gradient flows through it). Returns `self`
    /// when already dense with offset 0.
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() && self.layout().offset() == 0 {
            return Ok(self.clone());
        }
        self.copy()
    }

    /// A fresh dense copy, always (recorded).
    pub fn copy(&self) -> Result<Tensor> {
        let s = self.storage().contiguous(self.layout())?;
        Ok(Tensor::from_op(s, self.shape(), || Op::Copy(self.clone())))
    }

    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let s = self.storage().to_dtype(self.layout(), dtype)?;
        let t = Tensor::from_storage(s, self.shape());
        // Gradients flow between float dtypes only.
        if dtype.is_float() && self.dtype().is_float() { Ok(t.with_op(|| Op::ToDType(self.clone()))) } else { Ok(t) }
    }

    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        // Not recorded: gradients do not flow across devices.
        let s = self.storage().to_device(self.layout(), device)?;
        Ok(Tensor::from_storage(s, self.shape()))
    }

    /// Overwrites the elements this tensor views with `src`'s values (same
    /// shape and dtype, any device); used by optimizers, running statistics
    /// and checkpoint loading. Not recorded.
    pub fn assign(&self, src: &Tensor) -> Result<()> {
        if src.shape() != self.shape() {
            return Err(shape_err("assign", format!("source shape {:?} differs from {:?}", src.shape(), self.shape())));
        }
        if src.dtype() != self.dtype() {
            return Err(Error::DTypeMismatch { op: "assign", lhs: self.dtype(), rhs: src.dtype() });
        }
        if self.shape().iter().zip(self.layout().strides()).any(|(&d, &s)| d > 1 && s == 0) {
            return Err(arg_err("assign", format!("cannot write into a broadcast view of shape {:?}", self.shape())));
        }
        // Read the source first: it may share this storage. A source on
        // another device is copied over (as torch's `copy_` does).
        let data = if src.device() == self.device() {
            src.storage().contiguous(src.layout())?
        } else {
            src.storage().to_device(src.layout(), self.device())?
        };
        let mut dst = self.0.storage.write().unwrap_or_else(|e| e.into_inner());
        dst.copy_into(self.layout(), &data, &Layout::contiguous(src.shape()))
    }
}

/// The element count of `shape`, or an error when it overflows.
fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| shape_err(op, format!("shape {shape:?} has more elements than fit in memory")))
}

/// A trainable leaf: gradients are kept for it, and `set` updates it in place.
#[derive(Clone, Debug)]
pub struct Var(Tensor);

impl Var {
    /// A new leaf holding a dense copy of `t`'s values.
    pub fn new(t: &Tensor) -> Result<Var> {
        let s = t.storage().contiguous(t.layout())?;
        Ok(Var(Tensor::build(s, Layout::contiguous(t.shape()), None, true)))
    }

    pub fn as_tensor(&self) -> &Tensor {
        &self.0
    }

    /// Replaces the values (shape and dtype must match).
    pub fn set(&self, t: &Tensor) -> Result<()> {
        self.0.assign(t)
    }
}

impl std::ops::Deref for Var {
    type Target = Tensor;
    fn deref(&self) -> &Tensor {
        &self.0
    }
}
