//! Reverse mode: topological order of the recorded nodes, each op's
//! gradient rule (written with Tensor ops, so it runs on every backend and
//! is itself recorded when a graph is requested), and `Grads`.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use crate::error::shape_err;
use crate::{Error, Result, Tensor, TensorId};

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops record their inputs on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous grad mode when dropped.
pub struct GradModeGuard(bool);

impl Drop for GradModeGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.0));
    }
}

fn set_grad_mode(on: bool) -> GradModeGuard {
    GradModeGuard(GRAD_ENABLED.with(|g| g.replace(on)))
}

/// Nothing is recorded until the guard drops (torch.no_grad()).
pub fn no_grad() -> GradModeGuard {
    set_grad_mode(false)
}

/// Gradients keyed by tensor id. Holds the gradient of every `Var` reached.
#[derive(Debug, Default, Clone)]
pub struct Grads(HashMap<TensorId, Tensor>);

impl Grads {
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.0.get(&t.id())
    }
    pub fn remove(&mut self, t: &Tensor) -> Option<Tensor> {
        self.0.remove(&t.id())
    }
    pub fn insert(&mut self, t: &Tensor, g: Tensor) -> Option<Tensor> {
        self.0.insert(t.id(), g)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Nodes reachable from `root` through tracked inputs, each after all of
/// the nodes that consume it (iterative: deep graphs must not overflow).
fn topo_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(op) = t.op() {
            for i in op.inputs() {
                if i.tracks_grad() && !seen.contains(&i.id()) {
                    stack.push((i.clone(), false));
                }
            }
        }
    }
    order.reverse();
    order
}

impl Tensor {
    /// Gradients of this scalar with respect to every `Var` it depends on.
    pub fn backward(&self) -> Result<Grads> {
        if self.numel() != 1 {
            return Err(shape_err(
                "backward",
                format!(
                    "an implicit gradient needs a one-element tensor, got shape {:?}; use backward_with",
                    self.shape()
                ),
            ));
        }
        self.backward_with(&self.ones_like()?, false)
    }

    /// Like `backward`, but the gradients are themselves recorded, so they
    /// can be differentiated again (gradient penalties, gradgradcheck).
    pub fn backward_create_graph(&self) -> Result<Grads> {
        if self.numel() != 1 {
            return Err(shape_err(
                "backward_create_graph",
                format!("needs a one-element tensor, got {:?}", self.shape()),
            ));
        }
        self.backward_with(&self.ones_like()?, true)
    }

    /// Vector-Jacobian product seeded with `grad` (same shape as `self`).
    pub fn backward_with(&self, grad: &Tensor, create_graph: bool) -> Result<Grads> {
        if grad.shape() != self.shape() {
            return Err(shape_err(
                "backward",
                format!("seed gradient {:?} does not match output {:?}", grad.shape(), self.shape()),
            ));
        }
        if grad.dtype() != self.dtype() || grad.device() != self.device() {
            return Err(Error::Autograd(format!(
                "seed gradient is {:?} on {:?} but the output is {:?} on {:?}",
                grad.dtype(),
                grad.device(),
                self.dtype(),
                self.device()
            )));
        }
        if !self.tracks_grad() {
            return Err(Error::Autograd("the tensor does not depend on any Var (or was made under no_grad)".into()));
        }
        let _mode = set_grad_mode(create_graph);
        let mut grads = Grads::default();
        grads.insert(self, grad.clone());
        for node in topo_order(self) {
            let Some(op) = node.op() else { continue };
            // Interior gradients are dropped once used; leaves (no op) keep theirs.
            let Some(g) = grads.remove(&node) else {
                continue;
            };
            let inputs = op.inputs();
            let needs: Vec<bool> = inputs.iter().map(|t| t.tracks_grad()).collect();
            let input_grads = op.backward(&node, &g, &needs)?;
            for ((input, ig), need) in inputs.into_iter().zip(input_grads).zip(needs) {
                let Some(ig) = ig else { continue };
                if !need {
                    continue;
                }
                let acc = match grads.remove(input) {
                    Some(prev) => prev.add(&ig)?,
                    None => ig,
                };
                grads.insert(input, acc);
            }
        }
        Ok(grads)
    }
}
