//! What each import of a module is linked to, for every engine.
//!
//! Which import gets which function is decided in Elixir
//! (`Munition.Host.Capabilities.resolve/3`), where capabilities are granted
//! and signatures compared. This file links exactly the links it is given: an
//! import without one is refused, so an import can never reach the host
//! without having been granted. Signatures are not compared again here:
//! each engine checks every import's type when it instantiates.

use rustler::types::tuple::get_tuple;
use rustler::{Atom, Decoder, NifResult, Term};

use crate::atoms;
use crate::engine::module::Compiled;
use crate::engine::types::EngineTypes;
use crate::host::builtins::Builtin;
use crate::vocabulary::error::{MunitionError, MunitionResult};
use crate::vocabulary::value::{atom_type, ValueType};

/// What one import is linked to, as decided by the capability gate.
pub enum Link {
    /// `{:builtin, module, name}`: the built-in host function of that import
    /// name (see `host::builtins`).
    Builtin { module: String, name: String },
    /// `{:elixir, module, name, index, params, results}`: the Elixir host
    /// function at `index` in the call's list, with its signature.
    Elixir {
        module: String,
        name: String,
        index: u32,
        params: Vec<ValueType>,
        results: Vec<ValueType>,
    },
}

impl Link {
    fn links(&self, import_module: &str, import_name: &str) -> bool {
        let (module, name) = match self {
            Link::Builtin { module, name } | Link::Elixir { module, name, .. } => (module, name),
        };
        module == import_module && name == import_name
    }
}

/// Decodes the two tuples above; anything else (another shape, a type that is
/// not `:i32`, `:i64`, `:f32` or `:f64`) is a `badarg`, which Rustler reports
/// as "Could not decode field links on InstanceConfig" of `instance_new/2`.
impl<'a> Decoder<'a> for Link {
    fn decode(term: Term<'a>) -> NifResult<Self> {
        let types = |list: Term<'a>| -> NifResult<Vec<ValueType>> {
            list.decode::<Vec<Atom>>()?
                .into_iter()
                .map(|atom| atom_type(atom).ok_or(rustler::Error::BadArg))
                .collect()
        };
        let elements = get_tuple(term)?;
        let tag: Atom = elements.first().ok_or(rustler::Error::BadArg)?.decode()?;
        match elements[..] {
            [_, module, name] if tag == atoms::builtin() => Ok(Link::Builtin {
                module: module.decode()?,
                name: name.decode()?,
            }),
            [_, module, name, index, params, results] if tag == atoms::elixir() => {
                Ok(Link::Elixir {
                    module: module.decode()?,
                    name: name.decode()?,
                    index: index.decode()?,
                    params: types(params)?,
                    results: types(results)?,
                })
            }
            _ => Err(rustler::Error::BadArg),
        }
    }
}

/// What an import resolved to, for the engine to make.
pub enum Resolved<'l> {
    Builtin(&'static Builtin),
    Elixir {
        name: &'l str,
        index: u32,
        params: &'l [ValueType],
        results: &'l [ValueType],
    },
}

/// Resolves `imports` (`(module, name)`, in import order) against `links`.
/// An import without a link, or a link to a built-in that does not exist, is
/// refused (all imports without a link named at once): the Elixir side never
/// asks for either, whichever engine.
fn resolve<'l, 'i>(
    imports: impl Iterator<Item = (&'i str, &'i str)>,
    links: &'l [Link],
) -> MunitionResult<Vec<Resolved<'l>>> {
    let mut resolved = Vec::new();
    let mut unlinked = Vec::new();
    for (import_module, import_name) in imports {
        let Some(link) = links
            .iter()
            .find(|link| link.links(import_module, import_name))
        else {
            unlinked.push(format!("{import_module}.{import_name}"));
            continue;
        };
        resolved.push(match link {
            Link::Builtin { module, name } => {
                Resolved::Builtin(crate::host::find(module, name).ok_or_else(|| {
                    MunitionError::Instantiation(format!(
                        "no built-in host function {module}.{name}"
                    ))
                })?)
            }
            Link::Elixir {
                name,
                index,
                params,
                results,
                ..
            } => Resolved::Elixir {
                name,
                index: *index,
                params,
                results,
            },
        });
    }
    if !unlinked.is_empty() {
        return Err(MunitionError::Instantiation(format!(
            "import(s) with no link: {}",
            unlinked.join(", ")
        )));
    }
    Ok(resolved)
}

/// How an engine makes the functions an import is linked to: the other
/// half of the seam, next to the linking it serves.
pub trait Imports: EngineTypes {
    /// An import made in a store.
    type Import;

    /// The built-in of `row`, made in `store` as import `import` (or why
    /// this engine has none).
    fn builtin(
        store: &mut Self::Store,
        row: &'static Builtin,
        import: u32,
    ) -> MunitionResult<Self::Import>;

    /// The Elixir host function at `index` of the call's list, imported as
    /// `name` (import `import`) with this signature, made in `store`.
    fn elixir(
        store: &mut Self::Store,
        name: &str,
        index: u32,
        params: &[ValueType],
        results: &[ValueType],
        import: u32,
    ) -> Self::Import;

    /// Import `import` of this signature, answered from the store's replay
    /// log (`host::journal::answer`): nothing is called.
    fn replayed(
        store: &mut Self::Store,
        import: u32,
        params: &[ValueType],
        results: &[ValueType],
    ) -> Self::Import;
}

/// The imports of `module` from `links`, in import order, made in `store`
/// by the engine; in a replay, every import answered from the store's log
/// instead, whatever it was linked to when the call was recorded.
pub fn imports<E: Imports>(
    store: &mut E::Store,
    module: &Compiled<E>,
    links: &[Link],
) -> MunitionResult<Vec<E::Import>> {
    if E::state(store).journal.is_replaying() {
        return replayed::<E>(store, module);
    }
    let names = module
        .info
        .imports
        .iter()
        .map(|import| (import.module.as_str(), import.name.as_str()));
    resolve(names, links)?
        .into_iter()
        .zip(0u32..)
        .map(|(resolved, import)| match resolved {
            Resolved::Builtin(row) => E::builtin(store, row, import),
            Resolved::Elixir {
                name,
                index,
                params,
                results,
            } => Ok(E::elixir(store, name, index, params, results, import)),
        })
        .collect()
}

/// Every import of `module` answered from the replay log.
fn replayed<E: Imports>(
    store: &mut E::Store,
    module: &Compiled<E>,
) -> MunitionResult<Vec<E::Import>> {
    let types = |atoms: &[Atom]| -> MunitionResult<Vec<ValueType>> {
        atoms
            .iter()
            .map(|atom| {
                atom_type(*atom).ok_or_else(|| {
                    MunitionError::Instantiation(
                        "an import of a type a replay cannot answer".into(),
                    )
                })
            })
            .collect()
    };
    module
        .info
        .imports
        .iter()
        .zip(0u32..)
        .map(|(import, index)| {
            if import.kind != atoms::func() {
                return Err(MunitionError::Instantiation(format!(
                    "{}.{}: only imported functions can be replayed",
                    import.module, import.name
                )));
            }
            let (params, results) = (types(&import.params)?, types(&import.results)?);
            Ok(E::replayed(store, index, &params, &results))
        })
        .collect()
}
