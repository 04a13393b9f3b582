//! A WASI command: greets each name given as an argument, or "world", and
//! says so on standard output; with no `GREETING` in the environment it says
//! "Hello".
//!
//!     zig build-exe greet.zig -target wasm32-wasi -O ReleaseSmall
//!
//!     Munition.run(wasm, capabilities: [:wasi],
//!                  wasi: [args: ["greet", "Ada"], env: [{"GREETING", "Hi"}]])
//!     #=> {:ok, 0, %{stdout: "Hi, Ada!\n", ...}}

const std = @import("std");

pub fn main() !void {
    var arena = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);
    defer arena.deinit();
    const allocator = arena.allocator();

    const args = try std.process.argsAlloc(allocator);
    var env = try std.process.getEnvMap(allocator);
    const greeting = env.get("GREETING") orelse "Hello";

    const stdout = std.io.getStdOut().writer();
    if (args.len <= 1) {
        try stdout.print("{s}, world!\n", .{greeting});
    } else for (args[1..]) |name| {
        try stdout.print("{s}, {s}!\n", .{ greeting, name });
    }
}
