// Munition's binary ABI for AssemblyScript guests: the memory is exported by
// default, `alloc` hands out room for each binary argument, and `pack` makes the
// i64 result (pointer in the high 32 bits, length in the low 32 bits).
//
// The guests are built with `--runtime stub`: a bump allocator without a
// garbage collector, enough when every call runs in a fresh instance.

export function alloc(len: i32): usize {
  return heap.alloc(<usize>len);
}

// The UTF-8 bytes at [ptr, ptr + len) as a string.
export function readString(ptr: usize, len: i32): string {
  return String.UTF8.decodeUnsafe(ptr, <usize>len);
}

// `s` encoded as UTF-8, returned as a packed (ptr, len).
export function packString(s: string): u64 {
  const bytes = String.UTF8.encode(s);
  return (<u64>changetype<usize>(bytes) << 32) | <u64>bytes.byteLength;
}
