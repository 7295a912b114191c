//! The emulated engine: kernels/*.cu compiled by the C++ compiler (build.rs,
//! feature `cuda-emulation`) and run over host memory by cuda_emu.h — each
//! block on a worker thread, its CUDA threads as fibers.

use std::cell::UnsafeCell;
use std::ffi::{CStr, CString, c_char};

use super::KernelArgs;

unsafe extern "C" {
    fn kiln_emu_launch(
        name: *const c_char,
        gx: u32,
        gy: u32,
        gz: u32,
        bx: u32,
        by: u32,
        bz: u32,
        smem: usize,
        args: *const KernelArgs,
    ) -> i32;
    fn kiln_emu_entries() -> *const c_char;
}

/// Host memory the emulated kernels read and write through raw pointers.
pub(crate) struct HostBuf(UnsafeCell<Vec<u64>>);

// SAFETY: kernels run synchronously inside `launch`; the Rust side only
// touches the bytes between launches (write at creation, read back, clear).
unsafe impl Sync for HostBuf {}
unsafe impl Send for HostBuf {}

impl HostBuf {
    pub fn new(bytes: usize) -> HostBuf {
        HostBuf(UnsafeCell::new(vec![0; bytes.div_ceil(8)]))
    }

    pub fn ptr(&self) -> u64 {
        unsafe { (*self.0.get()).as_mut_ptr() as u64 }
    }

    fn len_bytes(&self) -> usize {
        // SAFETY: the Vec itself is never resized after creation.
        unsafe { (*self.0.get()).len() * 8 }
    }

    pub fn write(&self, data: &[u8]) {
        assert!(data.len() <= self.len_bytes(), "write past the end of an emulated buffer");
        // SAFETY: in bounds (checked); no kernel runs while the host writes.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr() as *mut u8, data.len()) }
    }

    pub fn clear(&self) {
        // SAFETY: the whole allocation; no kernel runs while the host clears.
        unsafe { std::ptr::write_bytes(self.ptr() as *mut u8, 0, self.len_bytes()) }
    }

    pub fn read(&self, words: usize) -> Vec<u32> {
        assert!(4 * words <= self.len_bytes(), "read past the end of an emulated buffer");
        let mut out = vec![0u32; words];
        // SAFETY: in bounds (checked); kernels have finished (launches are synchronous).
        unsafe { std::ptr::copy_nonoverlapping(self.ptr() as *const u32, out.as_mut_ptr(), words) }
        out
    }
}

pub(crate) fn launch(name: &str, args: &KernelArgs, groups: [u32; 3], threads: u32) -> Result<(), String> {
    let c = CString::new(name).map_err(|e| e.to_string())?;
    let rc = unsafe {
        kiln_emu_launch(c.as_ptr(), groups[0], groups[1], groups[2], threads, 1, 1, 0, args as *const KernelArgs)
    };
    if rc != 0 { Err(format!("no kernel named {name} in the emulated build")) } else { Ok(()) }
}

/// Every entry point the emulated build has.
pub fn entries() -> Vec<String> {
    let s = unsafe { CStr::from_ptr(kiln_emu_entries()) };
    s.to_string_lossy().lines().map(str::to_string).collect()
}
