#!/usr/bin/env python3
"""Runs component plugins of examples/guests/components/plugin.wit under
Wasmtime's own component runtime (wasmtime-py, the Python embedding of
Wasmtime's C API) and checks that each does what js/plugin.js does: the
reference Munition's component support can be compared with.

    PYTHONPATH=<wasmtime-py> python3 tools/check_component_plugin.py PLUGIN.wasm...

tools/build_components.sh runs it on plugin_c.wasm after each build, with
wasmtime-py 48 (Munition's Wasmtime) from its cache:

    PYTHONPATH=~/.cache/munition/toolchains/wasmtime-py-<key> \\
      python3 tools/check_component_plugin.py _build/guests/components/plugin_*.wasm

The JavaScript and Python plugins pass too, after a minute or more of
compiling each. Prints one line a call; exits 1 on the first difference.
"""
import sys
import tempfile

import wasmtime
from wasmtime import component as cm

HOST = "munition:plugin/host@0.1.0"
# Plenty for any call that returns: a JavaScript plugin's first call spends
# millions. spin() gets a small budget of its own.
FUEL = 10**12
SPIN_FUEL = 10_000_000


class Plugin:
    """One instance, in a store of its own: a trap leaves an instance that
    cannot be entered again, so each trapping call gets a fresh one."""

    def __init__(self, engine, component):
        self.logs = []
        self.store = wasmtime.Store(engine)
        self.store.set_fuel(FUEL)
        # A file, not stderr_custom: Wasmtime writes WASI 0.2 output from a
        # tokio thread, and a Python callback there panics as Python exits.
        self._stderr = tempfile.NamedTemporaryFile(prefix="plugin-stderr-")
        wasi = wasmtime.WasiConfig()
        wasi.stderr_file = self._stderr.name
        self.store.set_wasi(wasi)
        linker = cm.Linker(engine)
        linker.add_wasip2()
        with linker.root() as root:
            with root.add_instance(HOST) as host:
                host.add_func("log", lambda _store, message: self.logs.append(message))
        self.instance = linker.instantiate(self.store, component)

    @property
    def stderr(self):
        with open(self._stderr.name, "rb") as f:
            return f.read()

    def call(self, name, *args):
        func = self.instance.get_func(self.store, name)
        result = func(self.store, *args)
        func.post_return(self.store)
        return result


def order(amount, country):
    record = cm.Record()
    record.amount, record.country = amount, country
    return record


def check(path):
    engine = wasmtime.Engine(config())
    component = cm.Component.from_file(engine, path)
    failures = []

    def expect(call, got, want):
        ok = got == want
        print(f"  {'ok  ' if ok else 'FAIL'} {call} = {got!r}" + ("" if ok else f", expected {want!r}"))
        if not ok:
            failures.append(call)

    plugin = Plugin(engine, component)
    for args, want in [((1200, "DE"), True), ((1200, "FR"), False), ((1000, "FR"), True)]:
        expect(f"check{args!r}", plugin.call("check", *args), want)
    for args, want in [
        ((10, "FR"), cm.Variant("allow")),
        ((1200, "DE"), cm.Variant("review", "large order from DE")),
        ((4294967295, "FR"), cm.Variant("deny", "4294967295 is over the limit")),
    ]:
        expect(f"classify(order{args!r})", plugin.call("classify", order(*args)), want)
    for text, want, log in [
        ("Hello, World", ["hello", "world"], "tags of 12 characters"),
        ("", [], "tags of 0 characters"),
        ("  snake_case42 -- x", ["snake_case42", "x"], "tags of 19 characters"),
    ]:
        plugin.logs.clear()
        expect(f"tags({text!r})", plugin.call("tags", text), want)
        expect(f"  host.log during tags({text!r})", plugin.logs, [log])
    # result<u64, string> lifts as the bare payload: an int is ok, a str err.
    for amounts, want in [([1, 2], 3), ([4294967295] * 3, 3 * 4294967295), ([], 0),
                          ([0], "zero is not an amount"), ([5, 0, 7], "zero is not an amount")]:
        expect(f"total({amounts!r})", plugin.call("total", amounts), want)

    plugin = Plugin(engine, component)
    expect('fail("boom") traps', trap(plugin, "fail", "boom"), True)
    expect('  stderr has "boom"', b"boom" in plugin.stderr, True)

    plugin = Plugin(engine, component)
    plugin.store.set_fuel(SPIN_FUEL)
    expect("spin() runs out of fuel", "fuel" in str(trap(plugin, "spin")), True)
    return failures


def trap(plugin, name, *args):
    """True, or the fuel trap's text for spin, when the call trapped."""
    try:
        plugin.call(name, *args)
    except (wasmtime.Trap, wasmtime.WasmtimeError) as error:
        return str(error) if name == "spin" else True
    return False


def config():
    c = wasmtime.Config()
    c.consume_fuel = True
    return c


def main(paths):
    bad = []
    for path in paths:
        print(path)
        bad += [f"{path}: {call}" for call in check(path)]
    if bad:
        print("different from js/plugin.js:\n  " + "\n  ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
