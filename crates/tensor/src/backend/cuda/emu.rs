//! The emulated engine: kernels/*.cu compiled by the C++ compiler (build.rs,
//! feature `cuda-emulation`) and run over host memory by cuda_emu.h — each
//! block on a worker thread, its CUDA threads as fibers.

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
/// The allocation is owned through its raw pointer from creation to drop,
/// so no Rust reference to its contents ever exists.
pub(crate) struct HostBuf {
    ptr: *mut u64,
    words: usize,
}

// SAFETY: the contents are only touched through `ptr`, and every touch
// (launch, write, read, clear) holds `EMU`, so host threads are ordered as
// a GPU's single stream would order them.
unsafe impl Sync for HostBuf {}
unsafe impl Send for HostBuf {}

/// Serialises everything that touches emulated memory.
static EMU: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    EMU.lock().unwrap_or_else(|e| e.into_inner())
}

impl HostBuf {
    pub fn new(bytes: usize) -> HostBuf {
        let words = bytes.div_ceil(8).max(1);
        let ptr = Box::into_raw(vec![0u64; words].into_boxed_slice()).cast::<u64>();
        HostBuf { ptr, words }
    }

    pub fn ptr(&self) -> u64 {
        self.ptr as u64
    }

    pub fn write(&self, data: &[u8]) {
        assert!(data.len() <= self.words * 8, "write past the end of an emulated buffer");
        let _g = lock();
        // SAFETY: in bounds (checked); exclusive under the lock.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.cast::<u8>(), data.len()) }
    }

    pub fn clear(&self) {
        let _g = lock();
        // SAFETY: the whole allocation; exclusive under the lock.
        unsafe { std::ptr::write_bytes(self.ptr, 0, self.words) }
    }

    pub fn read(&self, words: usize) -> Vec<u32> {
        assert!(4 * words <= self.words * 8, "read past the end of an emulated buffer");
        let mut out = vec![0u32; words];
        let _g = lock();
        // SAFETY: in bounds (checked); no kernel runs while the lock is held.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.cast::<u32>(), out.as_mut_ptr(), words) }
        out
    }
}

impl Drop for HostBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from Box::into_raw of a boxed slice of `words` u64s.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.words)) });
    }
}

pub(crate) fn launch(name: &str, args: &KernelArgs, groups: [u32; 3], threads: u32) -> Result<(), String> {
    let c = CString::new(name).map_err(|e| e.to_string())?;
    let _g = lock();
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
