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

/// Nodes reachable from `roots` through tracked inputs, each after all of
/// the nodes that consume it (iterative: deep graphs must not overflow).
fn topo_order(roots: &[Tensor]) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<(Tensor, bool)> = roots.iter().map(|r| (r.clone(), false)).collect();
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
        propagate(&[(self.clone(), grad.clone())], &HashSet::new(), false, create_graph)
    }
}

/// Runs every recorded rule from the seeded outputs back to the leaves.
/// Interior gradients are dropped once used, except those in `keep`.
/// With `prune`, only the paths that reach a tensor in `keep` are followed
/// (torch.autograd.grad skips the rest: a gradient penalty's first backward
/// then computes no weight gradients).
fn propagate(seeds: &[(Tensor, Tensor)], keep: &HashSet<TensorId>, prune: bool, create_graph: bool) -> Result<Grads> {
    let _mode = set_grad_mode(create_graph);
    let mut grads = Grads::default();
    for (out, g) in seeds {
        let acc = match grads.remove(out) {
            Some(prev) => prev.add(g)?,
            None => g.clone(),
        };
        grads.insert(out, acc);
    }
    let roots: Vec<Tensor> = seeds.iter().map(|(t, _)| t.clone()).collect();
    let order = topo_order(&roots);
    let mut reaches = HashSet::new();
    if prune {
        reaches.clone_from(keep);
        // Inputs come before their consumers in the reversed order.
        for node in order.iter().rev() {
            if let Some(op) = node.op()
                && op.inputs().iter().any(|i| reaches.contains(&i.id()))
            {
                reaches.insert(node.id());
            }
        }
    }
    for node in order {
        let Some(op) = node.op() else { continue };
        let g = if keep.contains(&node.id()) { grads.get(&node).cloned() } else { grads.remove(&node) };
        let Some(g) = g else { continue };
        let inputs = op.inputs();
        let needs: Vec<bool> =
            inputs.iter().map(|t| t.tracks_grad() && (!prune || reaches.contains(&t.id()))).collect();
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

/// The flags of torch.autograd.grad.
#[derive(Debug, Clone, Copy, Default)]
pub struct GradOptions {
    /// Record the gradients' own graph (for a gradient penalty's backward).
    pub create_graph: bool,
    /// An input the outputs do not depend on gets None instead of an error.
    pub allow_unused: bool,
    /// ... or zeros of its shape instead of None (torch's materialize_grads).
    pub materialize_grads: bool,
}

/// torch.autograd.grad(outputs, inputs, grad_outputs, …): the gradient of
/// Σᵢ ⟨outputs[i], grad_outputs[i]⟩ with respect to each input, which may be
/// a Var or any tensor recorded on the way (an interior gradient). Without
/// `grad_outputs` every output must have one element (seeded with 1). Nothing
/// is accumulated anywhere: the gradients are returned, in input order.
pub fn grad(
    outputs: &[&Tensor],
    inputs: &[&Tensor],
    grad_outputs: Option<&[&Tensor]>,
    opts: GradOptions,
) -> Result<Vec<Option<Tensor>>> {
    if let Some(gs) = grad_outputs
        && gs.len() != outputs.len()
    {
        return Err(Error::Autograd(format!("grad: {} outputs but {} grad_outputs", outputs.len(), gs.len())));
    }
    let mut seeds = Vec::with_capacity(outputs.len());
    for (i, out) in outputs.iter().enumerate() {
        let g = match grad_outputs {
            Some(gs) => gs[i].clone(),
            None if out.numel() == 1 => out.ones_like()?,
            None => {
                return Err(shape_err(
                    "grad",
                    format!("output {i} has shape {:?}: grad_outputs is needed for a non-scalar output", out.shape()),
                ));
            }
        };
        if g.shape() != out.shape() || g.dtype() != out.dtype() || g.device() != out.device() {
            return Err(shape_err(
                "grad",
                format!(
                    "grad_outputs[{i}] is {:?} {:?} on {:?} but output {i} is {:?} {:?} on {:?}",
                    g.shape(),
                    g.dtype(),
                    g.device(),
                    out.shape(),
                    out.dtype(),
                    out.device()
                ),
            ));
        }
        if !out.tracks_grad() {
            return Err(Error::Autograd(format!("grad: output {i} does not depend on any Var")));
        }
        seeds.push(((*out).clone(), g));
    }
    if let Some(i) = inputs.iter().position(|t| !t.tracks_grad()) {
        return Err(Error::Autograd(format!(
            "grad: input {i} does not require a gradient (not a Var nor made from one)"
        )));
    }
    let keep: HashSet<TensorId> = inputs.iter().map(|t| t.id()).collect();
    let grads = propagate(&seeds, &keep, true, opts.create_graph)?;
    inputs
        .iter()
        .enumerate()
        .map(|(i, t)| match grads.get(t) {
            Some(g) => Ok(Some(g.clone())),
            None if opts.materialize_grads => Ok(Some(t.zeros_like()?)),
            None if opts.allow_unused => Ok(None),
            None => Err(Error::Autograd(format!(
                "grad: input {i} was not used to compute the outputs (set allow_unused or materialize_grads)"
            ))),
        })
        .collect()
}
