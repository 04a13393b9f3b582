//! A component's WIT world as Elixir sees it: each function it imports and
//! exports with its parameters and result as WIT text (`list<string>`,
//! `result<u64, string>`), and what Munition cannot call.
//!
//! Every name here was chosen by the component's author: they stay strings,
//! never atoms (the atom table is never collected).

use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::Type;

use super::ENGINE;

/// The most characters of one rendered type. Types are a DAG: a tuple of
/// two of a tuple of two of ... renders exponentially, so a hostile
/// component could ask for gigabytes of text. Past the budget, `…`.
const TYPE_TEXT_BUDGET: usize = 2048;

/// One function of the world, imported or exported.
#[derive(Clone, rustler::NifMap)]
pub struct WitFunction {
    /// The interface it belongs to (`wasi:cli/stdout@0.2.3`), or `""` at
    /// the root of the world.
    pub interface: String,
    pub name: String,
    /// `{name, type}` of each parameter.
    pub params: Vec<(String, String)>,
    /// The types of its results (none or one).
    pub results: Vec<String>,
    /// Why Munition cannot call it (or link it), if it cannot.
    pub refused: Option<String>,
}

/// `ty` as WIT text, within `TYPE_TEXT_BUDGET` characters.
pub fn render(ty: &Type) -> String {
    let mut out = String::new();
    write(ty, &mut out);
    out
}

fn write(ty: &Type, out: &mut String) {
    if out.len() > TYPE_TEXT_BUDGET {
        if !out.ends_with('…') {
            out.push('…');
        }
        return;
    }
    let list = |out: &mut String,
                open: &str,
                items: &mut dyn Iterator<Item = (String, Option<Type>)>,
                close: &str| {
        out.push_str(open);
        for (i, (name, ty)) in items.enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&name);
            if let Some(ty) = ty {
                if name.is_empty() {
                    write(&ty, out);
                } else {
                    out.push_str(": ");
                    write(&ty, out);
                }
            }
        }
        out.push_str(close);
    };
    match ty {
        Type::Bool => out.push_str("bool"),
        Type::S8 => out.push_str("s8"),
        Type::U8 => out.push_str("u8"),
        Type::S16 => out.push_str("s16"),
        Type::U16 => out.push_str("u16"),
        Type::S32 => out.push_str("s32"),
        Type::U32 => out.push_str("u32"),
        Type::S64 => out.push_str("s64"),
        Type::U64 => out.push_str("u64"),
        Type::Float32 => out.push_str("f32"),
        Type::Float64 => out.push_str("f64"),
        Type::Char => out.push_str("char"),
        Type::String => out.push_str("string"),
        Type::List(l) => {
            out.push_str("list<");
            write(&l.ty(), out);
            out.push('>');
        }
        Type::FixedLengthList(l) => {
            out.push_str("list<");
            write(&l.ty(), out);
            out.push_str(&format!(", {}>", l.len()));
        }
        Type::Map(m) => {
            out.push_str("map<");
            write(&m.key(), out);
            out.push_str(", ");
            write(&m.value(), out);
            out.push('>');
        }
        Type::Record(r) => list(
            out,
            "record { ",
            &mut r.fields().map(|f| (f.name.to_string(), Some(f.ty))),
            " }",
        ),
        Type::Tuple(t) => list(
            out,
            "tuple<",
            &mut t.types().map(|t| (String::new(), Some(t))),
            ">",
        ),
        Type::Variant(v) => list(
            out,
            "variant { ",
            &mut v.cases().map(|c| (c.name.to_string(), c.ty)),
            " }",
        ),
        Type::Enum(e) => list(
            out,
            "enum { ",
            &mut e.names().map(|n| (n.to_string(), None)),
            " }",
        ),
        Type::Flags(f) => list(
            out,
            "flags { ",
            &mut f.names().map(|n| (n.to_string(), None)),
            " }",
        ),
        Type::Option(o) => {
            out.push_str("option<");
            write(&o.ty(), out);
            out.push('>');
        }
        Type::Result(r) => {
            out.push_str("result");
            match (r.ok(), r.err()) {
                (None, None) => {}
                (Some(ok), None) => {
                    out.push('<');
                    write(&ok, out);
                    out.push('>');
                }
                (ok, Some(err)) => {
                    out.push('<');
                    match ok {
                        Some(ok) => write(&ok, out),
                        None => out.push('_'),
                    }
                    out.push_str(", ");
                    write(&err, out);
                    out.push('>');
                }
            }
        }
        Type::Own(_) => out.push_str("own<resource>"),
        Type::Borrow(_) => out.push_str("borrow<resource>"),
        Type::Future(_) => out.push_str("future"),
        Type::Stream(_) => out.push_str("stream"),
        Type::ErrorContext => out.push_str("error-context"),
    }
}

/// Why a value of `ty` cannot cross between Elixir and a fresh instance,
/// if it cannot: a resource handle means nothing once the instance that
/// made it is gone (and every call gets a fresh one), and the asynchronous
/// types need a call that outlives its return.
pub fn refusal(ty: &Type, depth: usize) -> Option<String> {
    if depth > 100 {
        return Some("its types are nested more than 100 deep".into());
    }
    let inner = |ty: &Type| refusal(ty, depth + 1);
    match ty {
        Type::Own(_) | Type::Borrow(_) => Some(
            "it takes or returns a resource, and a resource cannot outlive the fresh instance \
             of one call"
                .into(),
        ),
        Type::Future(_) | Type::Stream(_) | Type::ErrorContext => Some(
            "it takes or returns an asynchronous value (future, stream or error-context), \
             which Munition does not support"
                .into(),
        ),
        Type::List(l) => inner(&l.ty()),
        Type::FixedLengthList(l) => inner(&l.ty()),
        Type::Map(m) => inner(&m.key()).or_else(|| inner(&m.value())),
        Type::Option(o) => inner(&o.ty()),
        Type::Result(r) => r
            .ok()
            .and_then(|t| inner(&t))
            .or_else(|| r.err().and_then(|t| inner(&t))),
        Type::Record(r) => r.fields().find_map(|f| inner(&f.ty)),
        Type::Tuple(t) => t.types().find_map(|t| inner(&t)),
        Type::Variant(v) => v.cases().find_map(|c| c.ty.and_then(|t| inner(&t))),
        _ => None,
    }
}

/// `func` of `interface` (`""` at the root) as listed to Elixir.
pub fn function(interface: &str, name: &str, func: &ComponentFunc) -> WitFunction {
    let refused = if func.async_() {
        Some("it is an async function, which Munition does not support".into())
    } else {
        func.params()
            .find_map(|(_, ty)| refusal(&ty, 0))
            .or_else(|| func.results().find_map(|ty| refusal(&ty, 0)))
    };
    WitFunction {
        interface: interface.to_string(),
        name: name.to_string(),
        params: func
            .params()
            .map(|(name, ty)| (name.to_string(), render(&ty)))
            .collect(),
        results: func.results().map(|ty| render(&ty)).collect(),
        refused,
    }
}

/// The functions of a world's imports or exports (`items`), each
/// interface's listed under it; `on_func` sees each with its type.
pub fn functions<'a>(
    items: impl Iterator<Item = (&'a str, ComponentItem)>,
    mut on_func: impl FnMut(&str, &str, &ComponentFunc),
) -> Vec<WitFunction> {
    let mut listed = Vec::new();
    for (name, item) in items {
        match item {
            ComponentItem::ComponentFunc(func) => {
                on_func("", name, &func);
                listed.push(function("", name, &func));
            }
            ComponentItem::ComponentInstance(instance) => {
                for (func_name, export) in instance.exports(&ENGINE) {
                    if let ComponentItem::ComponentFunc(func) = export.ty {
                        on_func(name, func_name, &func);
                        listed.push(function(name, func_name, &func));
                    }
                }
            }
            // Types, resources, modules and nested components are not
            // called: the functions that use them are listed.
            _ => {}
        }
    }
    listed
}
