import { log } from "munition:plugin/host@0.1.0";

export function check(amount, country) {
  return amount <= 1000 || country === "DE";
}

export function classify(order) {
  if (order.amount <= 1000) return { tag: "allow" };
  if (order.country === "DE") return { tag: "review", val: `large order from ${order.country}` };
  return { tag: "deny", val: `${order.amount} is over the limit` };
}

export function tags(text) {
  log(`tags of ${text.length} characters`);
  return text.toLowerCase().split(/\W+/).filter((word) => word.length > 0);
}

export function total(amounts) {
  let sum = 0n;
  for (const amount of amounts) {
    if (amount === 0) throw "zero is not an amount";
    sum += BigInt(amount);
  }
  return sum;
}

export function spin() {
  let turns = 0;
  for (;;) turns++;
}

export function fail(message) {
  throw new Error(message);
}
