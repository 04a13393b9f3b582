// A validating parser: `parse_port("8080")` is 8080, and anything that is not
// a port number throws. AssemblyScript compiles `throw` (and `assert`) to a
// call of the imported `env.abort(message, file, line, column)`, which
// Munition grants with the `:abort` capability and reports as a `:trap` crash
// with trap `:abort` and the message.
//
//   npx asc port.ts --runtime stub -O3 --debug -o port.wasm

import { readString } from "./abi";
export { alloc } from "./abi";

export function parse_port(ptr: usize, len: i32): i32 {
  const text = readString(ptr, len).trim();
  if (text.length == 0) throw new Error("empty port");

  let port = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) throw new Error("not a port number: " + text);
    port = port * 10 + (c - 0x30);
    if (port > 65535) throw new Error("port out of range: " + text);
  }
  assert(port != 0, "port 0 is reserved");
  return port;
}
