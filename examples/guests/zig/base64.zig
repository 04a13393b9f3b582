//! A freestanding guest (no WASI, no imports) following Munition's binary ABI:
//! it exports `memory`, `alloc(len) -> ptr` and `base64_encode(ptr, len) -> i64`
//! / `base64_decode(ptr, len) -> i64`, whose results pack the output's pointer
//! (high 32 bits) and length (low 32 bits). It uses Zig's standard library
//! (std.base64, std.heap.wasm_allocator).
//!
//!     zig build-exe base64.zig -target wasm32-freestanding -O ReleaseSmall \
//!         -fno-entry -rdynamic -fno-strip
//!
//! (`-fno-strip` keeps the DWARF, so that a crash dump's backtrace names
//! base64.zig.)
//!
//!     Munition.fire(wasm, "base64_encode", ["hello"], result: :binary)
//!     #=> {:ok, "aGVsbG8=", _}
//!
//! Input that is not base64 makes `base64_decode` trap (`unreachable`), as a
//! plugin with no other way to report an error would.

const std = @import("std");

const allocator = std.heap.wasm_allocator;
const codecs = std.base64.standard;

/// Memory for one binary argument. Every call runs in a fresh instance:
/// nothing needs to be freed. At least one byte, so that an empty argument
/// still gets an address inside memory (Zig's empty slices point nowhere).
export fn alloc(len: u32) ?[*]u8 {
    const buf = allocator.alloc(u8, @max(len, 1)) catch return null;
    return buf.ptr;
}

export fn base64_encode(ptr: [*]const u8, len: u32) u64 {
    const input = ptr[0..len];
    const out = allocator.alloc(u8, codecs.Encoder.calcSize(input.len)) catch @trap();
    return pack(codecs.Encoder.encode(out, input));
}

export fn base64_decode(ptr: [*]const u8, len: u32) u64 {
    const input = ptr[0..len];
    const size = codecs.Decoder.calcSizeForSlice(input) catch @trap();
    const out = allocator.alloc(u8, size) catch @trap();
    codecs.Decoder.decode(out, input) catch @trap();
    return pack(out);
}

fn pack(out: []const u8) u64 {
    if (out.len == 0) return 0; // an empty slice's pointer is not an address
    return (@as(u64, @intFromPtr(out.ptr)) << 32) | out.len;
}
