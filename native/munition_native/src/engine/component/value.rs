//! WIT values as Elixir terms, both ways, by one table (documented in
//! `guides/components.md`):
//!
//! | WIT | Elixir |
//! |---|---|
//! | `bool` | `true`, `false` |
//! | integers | integers, checked against the type's range |
//! | `f32`, `f64` | floats, or `:nan`, `:infinity`, `:neg_infinity` (as for core calls) |
//! | `char` | a binary of one code point (an integer code point is accepted) |
//! | `string` | a UTF-8 binary |
//! | `list<u8>` | a binary (a list of bytes is accepted) |
//! | `list<T>` | a list |
//! | `record` | a map with string keys (atom keys are accepted) |
//! | `tuple` | a tuple |
//! | `variant` | `"case"`, or `{"case", payload}` |
//! | `enum` | `"case"` |
//! | `option<T>` | `nil`, or the value; `{:some, v}` when `T` is itself an option |
//! | `result` | `{:ok, v}`, `{:error, e}`; `:ok`, `:error` without a payload |
//! | `flags` | a list of the names set, in declaration order |
//!
//! Names (fields, cases, flags) are strings both ways: they were chosen by
//! the component's author, and an atom is never collected. A caller may
//! pass atoms it already has; Munition never makes one from a name.

use rustler::types::map::MapIterator;
use rustler::types::tuple::{get_tuple, make_tuple};
use rustler::{Atom, Binary, Encoder, Env, Term, TermType};
use wasmtime::component::{Type, Val};

use crate::atoms;
use crate::vocabulary::term::{brief, bytes_term};
use crate::vocabulary::value::{decode_float, encode_float};

/// Where a value sits in the call, for the message of a `bad_args` error:
/// `argument o.amount`, `result`, `[3]`.
fn at(path: &str, step: &str) -> String {
    if step.starts_with('[') {
        format!("{path}{step}")
    } else {
        format!("{path}.{step}")
    }
}

fn expected(path: &str, what: &str, term: Term) -> String {
    format!("{path}: expected {what}, got {}", brief(term))
}

fn name_of(term: Term) -> Option<String> {
    match term.get_type() {
        TermType::Binary => term.decode::<String>().ok(),
        TermType::Atom => term.atom_to_string().ok(),
        _ => None,
    }
}

fn integer<T: TryFrom<i128> + std::fmt::Display>(
    term: Term,
    path: &str,
    ty: &str,
) -> Result<T, String> {
    let value: i128 = match term.decode::<i64>() {
        Ok(v) => v.into(),
        Err(_) => match term.decode::<u64>() {
            Ok(v) => v.into(),
            Err(_) if term.get_type() == TermType::Integer => {
                return Err(format!("{path}: {} is out of range for {ty}", brief(term)))
            }
            Err(_) => return Err(expected(path, &format!("an integer ({ty})"), term)),
        },
    };
    T::try_from(value).map_err(|_| format!("{path}: {value} is out of range for {ty}"))
}

fn float(term: Term, path: &str) -> Result<f64, String> {
    decode_float(term)
        .ok_or_else(|| expected(path, "a float, :nan, :infinity or :neg_infinity", term))
}

fn list_items<'a>(term: Term<'a>, path: &str) -> Result<Vec<Term<'a>>, String> {
    term.decode::<Vec<Term>>()
        .map_err(|_| expected(path, "a list", term))
}

/// `term` as a value of `ty`; `path` names it in errors.
pub fn to_val(term: Term, ty: &Type, path: &str) -> Result<Val, String> {
    Ok(match ty {
        Type::Bool => Val::Bool(
            term.decode::<bool>()
                .map_err(|_| expected(path, "true or false", term))?,
        ),
        Type::S8 => Val::S8(integer(term, path, "s8")?),
        Type::U8 => Val::U8(integer(term, path, "u8")?),
        Type::S16 => Val::S16(integer(term, path, "s16")?),
        Type::U16 => Val::U16(integer(term, path, "u16")?),
        Type::S32 => Val::S32(integer(term, path, "s32")?),
        Type::U32 => Val::U32(integer(term, path, "u32")?),
        Type::S64 => Val::S64(integer(term, path, "s64")?),
        Type::U64 => Val::U64(integer(term, path, "u64")?),
        Type::Float32 => Val::Float32(float(term, path)? as f32),
        Type::Float64 => Val::Float64(float(term, path)?),
        Type::Char => {
            let c = match term.get_type() {
                TermType::Integer => term.decode::<u32>().ok().and_then(char::from_u32),
                _ => term.decode::<String>().ok().and_then(|s| {
                    let mut chars = s.chars();
                    chars.next().filter(|_| chars.next().is_none())
                }),
            };
            Val::Char(c.ok_or_else(|| expected(path, "a string of one character (char)", term))?)
        }
        Type::String => {
            let binary = Binary::from_term(term).map_err(|_| expected(path, "a string", term))?;
            let text = std::str::from_utf8(binary.as_slice())
                .map_err(|e| format!("{path}: the string is not valid UTF-8 ({e})"))?;
            Val::String(text.to_string())
        }
        Type::List(l) => {
            let item = l.ty();
            if matches!(item, Type::U8) && term.get_type() == TermType::Binary {
                let binary =
                    Binary::from_term(term).map_err(|_| expected(path, "a binary", term))?;
                Val::List(binary.as_slice().iter().map(|b| Val::U8(*b)).collect())
            } else {
                Val::List(
                    list_items(term, path)?
                        .into_iter()
                        .enumerate()
                        .map(|(i, t)| to_val(t, &item, &at(path, &format!("[{i}]"))))
                        .collect::<Result<_, _>>()?,
                )
            }
        }
        Type::FixedLengthList(l) => {
            let items = list_items(term, path)?;
            if items.len() != l.len() as usize {
                return Err(format!(
                    "{path}: expected a list of {} items, got {}",
                    l.len(),
                    items.len()
                ));
            }
            let item = l.ty();
            Val::FixedLengthList(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| to_val(t, &item, &at(path, &format!("[{i}]"))))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Map(m) => {
            let iter = MapIterator::new(term).ok_or_else(|| expected(path, "a map", term))?;
            let (key, value) = (m.key(), m.value());
            Val::Map(
                iter.map(|(k, v)| {
                    Ok((
                        to_val(k, &key, &at(path, "key"))?,
                        to_val(v, &value, &at(path, "value"))?,
                    ))
                })
                .collect::<Result<_, String>>()?,
            )
        }
        Type::Record(r) => {
            let iter =
                MapIterator::new(term).ok_or_else(|| expected(path, "a map (record)", term))?;
            let mut given: Vec<(String, Term)> = Vec::new();
            for (key, value) in iter {
                let key = name_of(key).ok_or_else(|| {
                    format!("{path}: a record key must be a string, got {}", brief(key))
                })?;
                given.push((key, value));
            }
            let mut fields = Vec::new();
            for field in r.fields() {
                let position = given.iter().position(|(k, _)| k == field.name);
                let value = position
                    .ok_or_else(|| format!("{path}: the record has no field {:?}", field.name))?;
                let (_, value) = given.swap_remove(value);
                fields.push((
                    field.name.to_string(),
                    to_val(value, &field.ty, &at(path, field.name))?,
                ));
            }
            if let Some((extra, _)) = given.first() {
                return Err(format!("{path}: the record has no field named {extra:?}"));
            }
            Val::Record(fields)
        }
        Type::Tuple(t) => {
            let items = get_tuple(term).map_err(|_| expected(path, "a tuple", term))?;
            if items.len() != t.types().len() {
                return Err(format!(
                    "{path}: expected a tuple of {}, got {}",
                    t.types().len(),
                    items.len()
                ));
            }
            Val::Tuple(
                items
                    .into_iter()
                    .zip(t.types())
                    .enumerate()
                    .map(|(i, (item, ty))| to_val(item, &ty, &at(path, &format!("[{i}]"))))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Variant(v) => {
            let (name, payload) = case(term, path)?;
            let case = v
                .cases()
                .find(|c| c.name == name)
                .ok_or_else(|| format!("{path}: the variant has no case {name:?}"))?;
            match (case.ty, payload) {
                (None, None) => Val::Variant(name, None),
                (Some(ty), Some(payload)) => {
                    let payload = to_val(payload, &ty, &at(path, &name))?;
                    Val::Variant(name, Some(Box::new(payload)))
                }
                (None, Some(_)) => return Err(format!("{path}: case {name:?} has no payload")),
                (Some(_), None) => {
                    return Err(format!(
                        "{path}: case {name:?} needs a payload: {{{name:?}, value}}"
                    ))
                }
            }
        }
        Type::Enum(e) => {
            let name = name_of(term).ok_or_else(|| expected(path, "a case name (enum)", term))?;
            if !e.names().any(|n| n == name) {
                return Err(format!("{path}: the enum has no case {name:?}"));
            }
            Val::Enum(name)
        }
        Type::Option(o) => {
            let inner = o.ty();
            if term.get_type() == TermType::Atom
                && term
                    .decode::<Atom>()
                    .is_ok_and(|a| a == rustler::types::atom::nil())
            {
                Val::Option(None)
            } else if let Some(value) = some(term) {
                Val::Option(Some(Box::new(to_val(value, &inner, path)?)))
            } else if matches!(inner, Type::Option(_)) {
                return Err(expected(
                    path,
                    "nil or {:some, value} (a nested option)",
                    term,
                ));
            } else {
                Val::Option(Some(Box::new(to_val(term, &inner, path)?)))
            }
        }
        Type::Result(r) => {
            let (tag, payload) = match get_tuple(term) {
                Ok(items) if items.len() == 2 => (items[0].decode::<Atom>().ok(), Some(items[1])),
                _ => (term.decode::<Atom>().ok(), None),
            };
            let payload_of = |ty: Option<Type>, step: &str| -> Result<Option<Box<Val>>, String> {
                match (ty, payload) {
                    (Some(ty), Some(p)) => Ok(Some(Box::new(to_val(p, &ty, &at(path, step))?))),
                    (None, None) => Ok(None),
                    (None, Some(p))
                        if p.decode::<Atom>()
                            .is_ok_and(|a| a == rustler::types::atom::nil()) =>
                    {
                        Ok(None)
                    }
                    (None, Some(_)) => Err(format!(
                        "{path}: this result's {step} case has no payload: :{step}"
                    )),
                    (Some(_), None) => Err(format!(
                        "{path}: this result's {step} case needs a payload: {{:{step}, value}}"
                    )),
                }
            };
            match tag {
                Some(t) if t == atoms::ok() => Val::Result(Ok(payload_of(r.ok(), "ok")?)),
                Some(t) if t == atoms::error() => Val::Result(Err(payload_of(r.err(), "error")?)),
                _ => {
                    return Err(expected(
                        path,
                        "{:ok, value} or {:error, value} (result)",
                        term,
                    ))
                }
            }
        }
        Type::Flags(f) => {
            let mut set = Vec::new();
            for item in list_items(term, path)? {
                let name =
                    name_of(item).ok_or_else(|| expected(path, "a list of flag names", term))?;
                if !f.names().any(|n| n == name) {
                    return Err(format!("{path}: no flag named {name:?}"));
                }
                set.push(name);
            }
            Val::Flags(set)
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            return Err(format!(
                "{path}: {} values cannot be passed",
                super::wit::render(ty)
            ))
        }
    })
}

/// `{:some, value}`'s value.
fn some(term: Term) -> Option<Term> {
    let items = get_tuple(term).ok()?;
    match items[..] {
        [tag, value] if tag.decode::<Atom>().is_ok_and(|a| a == atoms::some()) => Some(value),
        _ => None,
    }
}

/// A variant's case: `"name"` or `{"name", payload}` (atoms accepted).
fn case<'a>(term: Term<'a>, path: &str) -> Result<(String, Option<Term<'a>>), String> {
    if let Some(name) = name_of(term) {
        return Ok((name, None));
    }
    match get_tuple(term).ok().as_deref() {
        Some([name, payload]) => match name_of(*name) {
            Some(name) => Ok((name, Some(*payload))),
            None => Err(expected(
                path,
                "\"case\" or {\"case\", payload} (variant)",
                term,
            )),
        },
        _ => Err(expected(
            path,
            "\"case\" or {\"case\", payload} (variant)",
            term,
        )),
    }
}

/// `val` (of type `ty`) as a term.
pub fn to_term<'a>(env: Env<'a>, val: &Val, ty: &Type) -> Term<'a> {
    match (val, ty) {
        (Val::Bool(b), _) => b.encode(env),
        (Val::S8(v), _) => v.encode(env),
        (Val::U8(v), _) => v.encode(env),
        (Val::S16(v), _) => v.encode(env),
        (Val::U16(v), _) => v.encode(env),
        (Val::S32(v), _) => v.encode(env),
        (Val::U32(v), _) => v.encode(env),
        (Val::S64(v), _) => v.encode(env),
        (Val::U64(v), _) => v.encode(env),
        (Val::Float32(v), _) => encode_float(f64::from(*v), env),
        (Val::Float64(v), _) => encode_float(*v, env),
        (Val::Char(c), _) => c.to_string().encode(env),
        (Val::String(s), _) => s.encode(env),
        (Val::List(items), Type::List(l)) => {
            let item = l.ty();
            if matches!(item, Type::U8) {
                let bytes: Vec<u8> = items
                    .iter()
                    .map(|v| if let Val::U8(b) = v { *b } else { 0 })
                    .collect();
                bytes_term(env, &bytes)
            } else {
                items
                    .iter()
                    .map(|v| to_term(env, v, &item))
                    .collect::<Vec<_>>()
                    .encode(env)
            }
        }
        (Val::FixedLengthList(items), Type::FixedLengthList(l)) => {
            let item = l.ty();
            items
                .iter()
                .map(|v| to_term(env, v, &item))
                .collect::<Vec<_>>()
                .encode(env)
        }
        (Val::Map(pairs), Type::Map(m)) => {
            let (key, value) = (m.key(), m.value());
            let keys: Vec<Term> = pairs.iter().map(|(k, _)| to_term(env, k, &key)).collect();
            let values: Vec<Term> = pairs.iter().map(|(_, v)| to_term(env, v, &value)).collect();
            Term::map_from_arrays(env, &keys, &values)
                .unwrap_or_else(|_| atoms::error().encode(env))
        }
        (Val::Record(fields), Type::Record(r)) => {
            let keys: Vec<Term> = fields.iter().map(|(name, _)| name.encode(env)).collect();
            let values: Vec<Term> = fields
                .iter()
                .zip(r.fields())
                .map(|((_, v), field)| to_term(env, v, &field.ty))
                .collect();
            Term::map_from_arrays(env, &keys, &values)
                .unwrap_or_else(|_| atoms::error().encode(env))
        }
        (Val::Tuple(items), Type::Tuple(t)) => {
            let items: Vec<Term> = items
                .iter()
                .zip(t.types())
                .map(|(v, ty)| to_term(env, v, &ty))
                .collect();
            make_tuple(env, &items)
        }
        (Val::Variant(name, payload), Type::Variant(v)) => match payload {
            None => name.encode(env),
            Some(payload) => {
                let ty = v.cases().find(|c| c.name == name).and_then(|c| c.ty);
                match ty {
                    Some(ty) => (name, to_term(env, payload, &ty)).encode(env),
                    None => name.encode(env),
                }
            }
        },
        (Val::Enum(name), _) => name.encode(env),
        (Val::Option(None), _) => rustler::types::atom::nil().encode(env),
        (Val::Option(Some(v)), Type::Option(o)) => {
            let inner = o.ty();
            let term = to_term(env, v, &inner);
            if matches!(inner, Type::Option(_)) {
                (atoms::some(), term).encode(env)
            } else {
                term
            }
        }
        (Val::Result(result), Type::Result(r)) => {
            let (tag, payload, ty) = match result {
                Ok(p) => (atoms::ok(), p, r.ok()),
                Err(p) => (atoms::error(), p, r.err()),
            };
            match (payload, ty) {
                (Some(p), Some(ty)) => (tag, to_term(env, p, &ty)).encode(env),
                _ => tag.encode(env),
            }
        }
        (Val::Flags(names), _) => names.encode(env),
        // Refused when the module was compiled (see `wit::refusal`): a
        // value the table has no row for never reaches here.
        _ => atoms::unsupported().encode(env),
    }
}
