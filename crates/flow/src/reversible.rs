//! The reversible backward (Gomez et al. 2017): gradients of a flow's loss
//! without storing its activations. The forward keeps only the latents;
//! the backward walks the nodes from the top, recovers each layer's input
//! by inverting it, re-runs that one layer with a graph, and takes the
//! vector-Jacobian product with the gradient arriving from above. Peak
//! memory is one layer's graph instead of all of them; the price is one
//! more forward and an inverse per layer, and gradients that differ from
//! the stored-activation backward by the inverse's rounding.

use kiln_tensor::{Grads, Result, Tensor, Var, no_grad};

use crate::flow::{FlowNet, Node};

/// Adds every gradient of `from` that belongs to one of `params` into `into`.
fn accumulate(into: &mut Grads, from: &Grads, params: &[Var]) -> Result<()> {
    for p in params {
        if let Some(g) = from.get(p) {
            let sum = match into.get(p) {
                Some(prev) => prev.add(g)?,
                None => g.clone(),
            };
            into.insert(p, sum);
        }
    }
    Ok(())
}

fn leaf(t: &Tensor) -> Result<Var> {
    Var::new(&t.detach())
}

/// The gradient `grads` holds for `v`, or zeros when nothing reached it.
fn grad_of(grads: &Grads, v: &Var) -> Result<Tensor> {
    match grads.get(v) {
        Some(g) => Ok(g.clone()),
        None => v.zeros_like(),
    }
}

/// Gradients of the loss `coef · Σ_images log p(y)` (plus terms without
/// parameters) with respect to `params`, for flow inputs `y`; also log p per
/// image. `coef` is ∂loss/∂log p of each image (−1/(n D ln 2) for mean bits/dim).
pub fn reversible_grads(net: &FlowNet, y: &Tensor, coef: f64, params: &[Var]) -> Result<(Tensor, Grads)> {
    let enc = {
        let _g = no_grad();
        net.encode(y, false)?
    };
    let log_p = enc.log_prob()?;
    let mut latents = enc.latents;
    let mut total = Grads::default();
    let top = latents.pop().ok_or_else(|| kiln_tensor::Error::Autograd("no latents".into()))?;
    // The top prior's gradient starts the walk down.
    let hv = leaf(&top)?;
    let grads = net.top.log_prob(&hv, None)?.sum_all()?.mul_scalar(coef)?.backward()?;
    accumulate(&mut total, &grads, params)?;
    let mut g_h = grad_of(&grads, &hv)?;
    let mut h = top;
    for node in net.nodes.iter().rev() {
        match node {
            Node::Layer(layer) => {
                let x = {
                    let _g = no_grad();
                    layer.inverse(&h)?
                };
                let xv = leaf(&x)?;
                let (out, log_det) = layer.forward(&xv, false)?;
                let surrogate = out.mul(&g_h)?.sum_all()?.add(&log_det.sum_all()?.mul_scalar(coef)?)?;
                let grads = surrogate.backward()?;
                accumulate(&mut total, &grads, params)?;
                g_h = grad_of(&grads, &xv)?;
                h = x;
            }
            Node::Split { prior, .. } => {
                let z2 = latents.pop().ok_or_else(|| kiln_tensor::Error::Autograd("latents ran out".into()))?;
                let (z1v, z2v) = (leaf(&h)?, leaf(&z2)?);
                let grads = prior.log_prob(&z2v, Some(&z1v))?.sum_all()?.mul_scalar(coef)?.backward()?;
                accumulate(&mut total, &grads, params)?;
                let g_z1 = match grads.get(&z1v) {
                    Some(g) => g_h.add(g)?,
                    None => g_h,
                };
                let g_z2 = grad_of(&grads, &z2v)?;
                g_h = Tensor::cat(&[&g_z1, &g_z2], 1)?;
                h = Tensor::cat(&[&h, &z2], 1)?;
            }
        }
    }
    Ok((log_p, total))
}
