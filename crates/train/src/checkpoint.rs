//! A run's checkpoint.safetensors: every store's tensors as `<store>.<name>`,
//! every optimizer's moments as `<optimizer>.<name>`, and as metadata the
//! step, the loop's generator (`rng`), each store's generator
//! (`rng.<store>`), each optimizer's step (`<optimizer>_step`) and the
//! config. DCGAN's names (g., d., opt_g., opt_d.) are those of the
//! checkpoints written before the shared loop, which still load.

use std::collections::HashMap;
use std::path::Path;

use kiln_nn::{load_checkpoint, save_checkpoint};
use kiln_tensor::{DType, Rng, Tensor};

use crate::Result;
use crate::recipe::Recipe;

pub const FILE: &str = "checkpoint.safetensors";

/// Whether every value of `t` is finite (always true for integer tensors).
fn all_finite(t: &Tensor) -> Result<bool> {
    Ok(match t.dtype() {
        DType::F64 => t.to_vec::<f64>()?.iter().all(|v| v.is_finite()),
        d if d.is_float() => t.to_dtype(DType::F32)?.to_vec::<f32>()?.iter().all(|v| v.is_finite()),
        _ => true,
    })
}

/// The name of the first tensor holding a NaN or ±inf, if any.
pub fn first_non_finite<'a>(tensors: impl IntoIterator<Item = (&'a String, &'a Tensor)>) -> Result<Option<String>> {
    for (name, t) in tensors {
        if !all_finite(t)? {
            return Ok(Some(name.clone()));
        }
    }
    Ok(None)
}

/// The first parameter or buffer of the model that is not finite (checked
/// after every step: names are only formatted for the culprit).
pub fn model_non_finite<R: Recipe>(model: &R) -> Result<Option<String>> {
    for (store, vs) in model.stores() {
        for (name, t) in vs.named_tensors() {
            if !all_finite(&t)? {
                return Ok(Some(format!("{store}.{name}")));
            }
        }
    }
    Ok(None)
}

fn rng_text(state: [u64; 4]) -> String {
    state.map(|v| v.to_string()).join(",")
}

fn parse_rng(text: &str, key: &str, path: &Path) -> Result<Rng> {
    let words: Option<Vec<u64>> = text.split(',').map(|w| w.parse().ok()).collect();
    let state: [u64; 4] = words
        .and_then(|w| w.try_into().ok())
        .ok_or_else(|| format!("{}: metadata {key} = {text:?} is not four integers", path.display()))?;
    Ok(Rng::from_state(state))
}

/// Writes the model's whole state; refuses (naming the tensor) if any
/// tensor is not finite, so a checkpoint is always one to resume from.
pub fn save<R: Recipe>(dir: &Path, model: &mut R, step: usize, rng: &Rng, config: &str) -> Result<()> {
    let path = dir.join(FILE);
    let mut tensors: Vec<(String, Tensor)> = vec![];
    let mut meta = HashMap::from([
        ("step".to_string(), step.to_string()),
        ("rng".to_string(), rng_text(rng.state())),
        ("config".to_string(), config.to_string()),
    ]);
    for (name, vs) in model.stores() {
        tensors.extend(vs.named_tensors().into_iter().map(|(n, t)| (format!("{name}.{n}"), t)));
        meta.insert(format!("rng.{name}"), rng_text(vs.rng_state()));
    }
    for (name, opt) in model.optimizers() {
        let (state, opt_step) = opt.state();
        tensors.extend(state.into_iter().map(|(n, t)| (format!("{name}.{n}"), t)));
        meta.insert(format!("{name}_step"), opt_step.to_string());
    }
    if let Some(bad) = first_non_finite(tensors.iter().map(|(n, t)| (n, t)))? {
        return Err(format!("step {step}: {bad} is not finite; no checkpoint was written").into());
    }
    save_checkpoint(&path, &tensors, &meta)?;
    Ok(())
}

/// Restores the model's state, returning (step, the loop's generator);
/// refuses a checkpoint holding NaN or ±inf, naming the tensor.
pub fn restore<R: Recipe>(dir: &Path, model: &mut R) -> Result<(usize, Rng)> {
    let path = dir.join(FILE);
    let ck = load_checkpoint(&path)?;
    if let Some(bad) = first_non_finite(&ck.tensors)? {
        return Err(format!("{}: tensor {bad} is not finite; this checkpoint cannot be used", path.display()).into());
    }
    let number = |key: &str| -> Result<u64> {
        let text = ck.meta(key, &path)?;
        text.parse().map_err(|_| format!("{}: metadata {key} = {text:?} is not a whole number", path.display()).into())
    };
    for (name, vs) in model.stores() {
        ck.restore(vs, &format!("{name}."), &path)?;
        // Checkpoints from before the shared loop have no store generators;
        // DCGAN never drew from them after initialisation, which `build` repeats.
        if let Some(text) = ck.metadata.get(&format!("rng.{name}")) {
            vs.set_rng_state(parse_rng(text, &format!("rng.{name}"), &path)?.state());
        }
    }
    for (name, opt) in model.optimizers() {
        let prefix = format!("{name}.");
        let state: HashMap<String, Tensor> = ck
            .tensors
            .iter()
            .filter_map(|(n, t)| n.strip_prefix(&prefix).map(|k| (k.to_string(), t.clone())))
            .collect();
        opt.load_state(&state, number(&format!("{name}_step"))?).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let rng = parse_rng(ck.meta("rng", &path)?, "rng", &path)?;
    Ok((number("step")? as usize, rng))
}
