//! Wasm values and value types as Erlang terms, both ways.
//!
//! Values: integers as integers (either spelling of the same bits going in),
//! floats as floats, and the floats Erlang cannot represent (NaN and the
//! infinities) as the atoms `:nan`, `:infinity` and `:neg_infinity`, so they
//! round-trip. Types: the atoms `:i32`, `:i64`, `:f32`, `:f64` (and, coming
//! out only, `:v128` and `:ref`).

use rustler::{Atom, Encoder, Env, Term};
use wasmtime::{Val, ValType};

use crate::atoms;
use crate::error::{MunitionError, MunitionResult};
use crate::term::{brief, bytes_term};

/// A wasm value on its way to Elixir. A v128 becomes a 16-byte little-endian
/// binary, a reference the atom `:ref`.
pub struct WasmValue(pub Val);

impl Encoder for WasmValue {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match &self.0 {
            Val::I32(v) => v.encode(env),
            Val::I64(v) => v.encode(env),
            Val::F32(bits) => encode_float(f32::from_bits(*bits) as f64, env),
            Val::F64(bits) => encode_float(f64::from_bits(*bits), env),
            Val::V128(v) => bytes_term(env, &v.as_u128().to_le_bytes()),
            _ => atoms::ref_().encode(env),
        }
    }
}

fn encode_float(value: f64, env: Env<'_>) -> Term<'_> {
    if value.is_nan() {
        atoms::nan().encode(env)
    } else if value == f64::INFINITY {
        atoms::infinity().encode(env)
    } else if value == f64::NEG_INFINITY {
        atoms::neg_infinity().encode(env)
    } else {
        value.encode(env)
    }
}

/// Converts one Elixir value (the `position`th of its `kind`, for errors:
/// "argument 0") to the wasm type declared for it. i32 takes -2^31..2^32-1 (signed or
/// unsigned spelling of the same bits), i64 likewise for 64 bits; floats take
/// Elixir floats and `:nan`, `:infinity`, `:neg_infinity`.
pub fn to_val(term: Term, ty: &ValType, kind: &str, position: usize) -> MunitionResult<Val> {
    // The label is formatted only on an error: most calls have none.
    let bad = |what: String| MunitionError::BadArgs(format!("{kind} {position}: {what}"));
    match ty {
        ValType::I32 => {
            let v: i64 = term
                .decode()
                .map_err(|_| bad(format!("expected an integer for i32, got: {}", brief(term))))?;
            if !(i32::MIN as i64..=u32::MAX as i64).contains(&v) {
                return Err(bad(format!("{v} is out of range for i32")));
            }
            Ok(Val::I32(v as i32))
        }
        ValType::I64 => {
            if let Ok(v) = term.decode::<i64>() {
                Ok(Val::I64(v))
            } else if let Ok(v) = term.decode::<u64>() {
                Ok(Val::I64(v as i64))
            } else if term.is_integer() {
                Err(bad(format!("{} is out of range for i64", brief(term))))
            } else {
                Err(bad(format!(
                    "expected an integer for i64, got: {}",
                    brief(term)
                )))
            }
        }
        ValType::F32 => {
            let v: f64 = decode_float(term)
                .ok_or_else(|| bad(format!("expected a float for f32, got: {}", brief(term))))?;
            Ok(Val::F32((v as f32).to_bits()))
        }
        ValType::F64 => {
            let v: f64 = decode_float(term)
                .ok_or_else(|| bad(format!("expected a float for f64, got: {}", brief(term))))?;
            Ok(Val::F64(v.to_bits()))
        }
        other => Err(bad(format!(
            "parameters of type {other} cannot be passed from Elixir"
        ))),
    }
}

/// An Elixir float, or one of the atoms Munition uses for the floats Erlang
/// cannot represent (as `WasmValue` encodes them). `None` for anything else,
/// which the caller turns into its `bad_args` error.
pub fn decode_float(term: Term) -> Option<f64> {
    if term.is_float() {
        // Checked just above: this decode cannot fail.
        return term.decode::<f64>().ok();
    }
    // Not an atom is not a float either: the caller reports it.
    let atom = term.decode::<Atom>().ok()?;
    if atom == atoms::nan() {
        Some(f64::NAN)
    } else if atom == atoms::infinity() {
        Some(f64::INFINITY)
    } else if atom == atoms::neg_infinity() {
        Some(f64::NEG_INFINITY)
    } else {
        None
    }
}

pub fn val_type_atom(ty: &ValType) -> Atom {
    match ty {
        ValType::I32 => atoms::i32(),
        ValType::I64 => atoms::i64(),
        ValType::F32 => atoms::f32(),
        ValType::F64 => atoms::f64(),
        ValType::V128 => atoms::v128(),
        ValType::Ref(_) => atoms::ref_(),
    }
}

/// The value type an Elixir host function may take or return, from its atom:
/// `None` for any other atom (there is no way to pass a v128 or a reference).
pub fn atom_val_type(atom: Atom) -> Option<ValType> {
    if atom == atoms::i32() {
        Some(ValType::I32)
    } else if atom == atoms::i64() {
        Some(ValType::I64)
    } else if atom == atoms::f32() {
        Some(ValType::F32)
    } else if atom == atoms::f64() {
        Some(ValType::F64)
    } else {
        None
    }
}
