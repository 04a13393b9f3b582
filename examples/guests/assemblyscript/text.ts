// Text plugins through Munition's binary ABI (see abi.ts).
//
//   npx asc text.ts --runtime stub -O3 --debug -o text.wasm
//
//   slugify("Hello, World!")          -> "hello-world"   (result: :binary)
//   levenshtein("kitten", "sitting")  -> 3               (two binary arguments)

import { readString, packString } from "./abi";
export { alloc } from "./abi";

function isAlphanumeric(c: i32): bool {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a);
}

// Lower-case ASCII letters and digits, every other run of characters one "-",
// none at either end.
export function slugify(ptr: usize, len: i32): u64 {
  const text = readString(ptr, len).toLowerCase();
  let slug = "";
  let dash = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (isAlphanumeric(c)) {
      if (dash && slug.length > 0) slug += "-";
      slug += String.fromCharCode(c);
      dash = false;
    } else {
      dash = true;
    }
  }
  return packString(slug);
}

// The edit distance between two strings, in characters (UTF-16 code units).
export function levenshtein(aPtr: usize, aLen: i32, bPtr: usize, bLen: i32): i32 {
  const a = readString(aPtr, aLen);
  const b = readString(bPtr, bLen);
  const row = new Array<i32>(b.length + 1);
  for (let j = 0; j <= b.length; j++) row[j] = j;

  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      const cost = a.charCodeAt(i - 1) == b.charCodeAt(j - 1) ? 0 : 1;
      row[j] = min(min(row[j] + 1, row[j - 1] + 1), diagonal + cost);
      diagonal = above;
    }
  }
  return row[b.length];
}
