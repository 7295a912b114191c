//! Named parameters and buffers with hierarchical names
//! (`gen.main.0.weight`), created through `Path`s, in insertion order.

use std::sync::{Arc, Mutex, MutexGuard};

use kiln_tensor::{DType, Device, Result, Rng, Tensor, Var};

use crate::Init;

#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// Trainable.
    Param(Var),
    /// State saved with the model but not trained (batchnorm running stats).
    Buffer(Tensor),
}

struct Inner {
    entries: Vec<(String, Entry)>,
    rng: Rng,
}

/// Every parameter and buffer of a model, by name. Cheap to clone (shared).
#[derive(Clone)]
pub struct VarStore {
    inner: Arc<Mutex<Inner>>,
    device: Device,
    dtype: DType,
}

/// A name prefix inside a store: `vs.root().sub("gen").sub(0)`.
#[derive(Clone)]
pub struct Path {
    store: VarStore,
    prefix: String,
}

impl VarStore {
    /// Initialisers draw from a generator seeded with `seed`.
    pub fn new(device: Device, dtype: DType, seed: u64) -> Self {
        VarStore { inner: Arc::new(Mutex::new(Inner { entries: vec![], rng: Rng::new(seed) })), device, dtype }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn root(&self) -> Path {
        Path { store: self.clone(), prefix: String::new() }
    }
    pub fn device(&self) -> Device {
        self.device
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Trainable parameters in creation order.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        self.lock()
            .entries
            .iter()
            .filter_map(|(n, e)| match e {
                Entry::Param(v) => Some((n.clone(), v.clone())),
                Entry::Buffer(_) => None,
            })
            .collect()
    }

    /// Every parameter and buffer (the tensors a checkpoint holds).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.lock()
            .entries
            .iter()
            .map(|(n, e)| match e {
                Entry::Param(v) => (n.clone(), v.as_tensor().clone()),
                Entry::Buffer(t) => (n.clone(), t.clone()),
            })
            .collect()
    }

    /// The state of the store's generator (initialisers, dropout masks):
    /// checkpoints save it so a resumed run draws the same masks.
    pub fn rng_state(&self) -> [u64; 4] {
        self.lock().rng.state()
    }

    pub fn set_rng_state(&self, state: [u64; 4]) {
        self.lock().rng = Rng::from_state(state);
    }

    pub fn num_parameters(&self) -> usize {
        self.trainable().iter().map(|(_, v)| v.numel()).sum()
    }

    fn add(&self, name: String, entry: Entry) -> Result<()> {
        let mut inner = self.lock();
        if inner.entries.iter().any(|(n, _)| *n == name) {
            return Err(kiln_tensor::Error::Argument { op: "VarStore", msg: format!("{name} is defined twice") });
        }
        inner.entries.push((name, entry));
        Ok(())
    }
}

impl Path {
    pub fn sub(&self, name: impl std::fmt::Display) -> Path {
        let prefix = if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        Path { store: self.store.clone(), prefix }
    }

    fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    pub fn store(&self) -> &VarStore {
        &self.store
    }

    /// A new trainable parameter `prefix.name` initialised by `init`.
    pub fn param(&self, name: &str, shape: &[usize], init: Init) -> Result<Var> {
        let t = {
            let mut inner = self.store.lock();
            init.tensor(shape, self.store.dtype, self.store.device, &mut inner.rng)?
        };
        let v = Var::new(&t)?;
        self.store.add(self.full(name), Entry::Param(v.clone()))?;
        Ok(v)
    }

    /// A new buffer (saved, not trained) filled with `value`.
    pub fn buffer(&self, name: &str, shape: &[usize], value: f64) -> Result<Tensor> {
        let t = Tensor::full(value, shape, self.store.dtype, self.store.device)?;
        self.store.add(self.full(name), Entry::Buffer(t.clone()))?;
        Ok(t)
    }

    /// Re-initialises the parameter `prefix.name` in place (e.g. DCGAN init).
    pub fn reinit(&self, name: &str, init: Init) -> Result<()> {
        let full = self.full(name);
        let mut inner = self.store.lock();
        let Some(Entry::Param(v)) = inner.entries.iter().find(|(n, _)| *n == full).map(|(_, e)| e.clone()) else {
            return Err(kiln_tensor::Error::Argument { op: "reinit", msg: format!("no parameter named {full}") });
        };
        let t = init.tensor(v.shape(), v.dtype(), v.device(), &mut inner.rng)?;
        v.set(&t)
    }

    /// The generator of the store (for dropout masks, noise, …).
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut Rng) -> T) -> T {
        f(&mut self.store.lock().rng)
    }
}
