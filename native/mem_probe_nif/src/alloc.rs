//! The library's global allocator. Blocks of [`VM_BLOCK_BYTES`] and more (a
//! walk's visited pages, its stacks and graphs as they grow) come from the
//! VM's `enif_alloc`, so `erlang:memory(system)` shows what a walk takes;
//! smaller ones, which every call makes and frees at once, come from the
//! system allocator (an `enif_alloc` and `enif_free` per call tripled the
//! cost of sizing a small term). Both return null on failure, and the walker
//! grows its collections with `try_reserve`, so a refusal ends the walk with
//! `out_of_memory` rather than aborting the VM.
//!
//! The route depends only on a block's size and alignment, which `dealloc`
//! is given too, so a block is always freed by the allocator that made it
//! (the default `realloc` allocates, copies and frees through these).

use std::alloc::{GlobalAlloc, Layout, System};

use rustler::sys::{c_void, enif_alloc, enif_free};

/// Blocks at least this large go to the VM's allocator.
const VM_BLOCK_BYTES: usize = 4096;
/// enif_alloc's alignment; more strictly aligned blocks stay with the system.
const VM_ALIGN: usize = 8;

struct WalkerAllocator;

fn from_vm(layout: &Layout) -> bool {
    layout.size() >= VM_BLOCK_BYTES && layout.align() <= VM_ALIGN
}

// SAFETY: every block is freed by the allocator that made it (the route is a
// function of the layout, which dealloc receives unchanged); enif_alloc
// returns 8-aligned memory or null, as GlobalAlloc allows.
unsafe impl GlobalAlloc for WalkerAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if from_vm(&layout) {
            enif_alloc(layout.size()) as *mut u8
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if from_vm(&layout) {
            enif_free(ptr as *mut c_void)
        } else {
            System.dealloc(ptr, layout)
        }
    }
}

#[global_allocator]
static ALLOCATOR: WalkerAllocator = WalkerAllocator;
