;; A proxy-wasm module whose request-headers callback traps: the "filter VM fails" fault.
;; tests/test_faults.py compiles it (wasmtime.wat2wasm) and loads it with the shipped Wasm
;; settings (failure_policy: FAIL_CLOSED) to show that a failed VM refuses, never bypasses.
(module
  (memory (export "memory") 4)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $at))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (unreachable)))
