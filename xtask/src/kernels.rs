//! `cargo xtask kernels check`: validates every shaders/*.wgsl with naga
//! (the same front end wgpu uses), no adapter needed. Each module is checked
//! as the backend compiles it: the `elem` alias and shaders/common.wgsl in
//! front, once per storage type the shader supports.
//! (CUDA kernels join this check with the CUDA backend issue.)

use std::path::Path;

pub fn check() -> Result<(), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shaders");
    let common = std::fs::read_to_string(dir.join("common.wgsl")).map_err(|e| format!("shaders/common.wgsl: {e}"))?;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl") && !p.ends_with("common.wgsl"))
        .collect();
    files.sort();
    let mut failed = 0;
    for path in &files {
        let name = format!("shaders/{}", path.file_name().unwrap().to_string_lossy());
        let body = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
        // Shaders that declare `array<elem>` are also built with f16 storage.
        let variants: &[(&str, &str)] = if body.contains("array<elem>") {
            &[("f32", "alias elem = f32;"), ("f16", "enable f16;\nalias elem = f16;")]
        } else {
            &[("f32", "alias elem = f32;")]
        };
        for (tag, prelude) in variants {
            let src = format!("{prelude}\n{common}\n{body}");
            match validate(&src) {
                Ok(entries) => println!("ok    {name} ({tag}): {}", entries.join(", ")),
                Err(e) => {
                    failed += 1;
                    println!("FAIL  {name} ({tag}):\n{e}");
                }
            }
        }
    }
    println!("{} shaders validated, {failed} failed", files.len());
    if failed > 0 { Err(format!("{failed} shader(s) failed validation")) } else { Ok(()) }
}

/// WebGPU's default limits, which every adapter supports: the shaders must
/// fit them so no adapter-specific tuning is needed.
const MAX_WORKGROUP_BYTES: u32 = 16384;
const MAX_INVOCATIONS: u32 = 256;

/// The module's entry points (with their workgroup memory), or naga's
/// parse/validation message, or the default limit an entry point exceeds.
fn validate(src: &str) -> Result<Vec<String>, String> {
    let module = naga::front::wgsl::parse_str(src).map_err(|e| e.emit_to_string(src))?;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .map_err(|e| e.emit_to_string(src))?;
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).map_err(|e| format!("layout: {e:?}"))?;
    let mut out = vec![];
    for (i, ep) in module.entry_points.iter().enumerate() {
        let uses = info.get_entry_point(i);
        let bytes: u32 = module
            .global_variables
            .iter()
            .filter(|(h, g)| g.space == naga::AddressSpace::WorkGroup && !uses[*h].is_empty())
            .map(|(_, g)| layouter[g.ty].size)
            .sum();
        let invocations: u32 = ep.workgroup_size.iter().product();
        if bytes > MAX_WORKGROUP_BYTES || invocations > MAX_INVOCATIONS {
            return Err(format!(
                "{}: {bytes} bytes of workgroup memory and {invocations} invocations exceed WebGPU's default limits \
                 ({MAX_WORKGROUP_BYTES} bytes, {MAX_INVOCATIONS} invocations)",
                ep.name
            ));
        }
        out.push(format!("{} ({invocations} threads, {bytes} B shared)", ep.name));
    }
    Ok(out)
}
