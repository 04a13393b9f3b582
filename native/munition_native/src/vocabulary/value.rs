//! Wasm values and value types as Erlang terms, both ways, for every engine
//! (each converts its own values to `munition_core::value::Value` at its
//! edge).
//!
//! Values: integers as integers (either spelling of the same bits going in),
//! floats as floats, and the floats Erlang cannot represent (NaN and the
//! infinities) as the atoms `:nan`, `:infinity` and `:neg_infinity`, so they
//! round-trip. Types: the atoms `:i32`, `:i64`, `:f32`, `:f64` (and, coming
//! out only, `:v128` and `:ref`).

use rustler::{Atom, Encoder, Env, Term};

pub use munition_core::value::{Value, ValueType};

use crate::atoms;
use crate::vocabulary::error::{MunitionError, MunitionResult};
use crate::vocabulary::term::{brief, bytes_term};

/// A wasm value on its way to Elixir. A v128 becomes a 16-byte little-endian
/// binary, a reference the atom `:ref`.
pub struct WasmValue(pub Value);

impl WasmValue {
    /// `values` as a list of terms.
    pub fn list(values: &[Value]) -> Vec<WasmValue> {
        values.iter().copied().map(WasmValue).collect()
    }
}

impl Encoder for WasmValue {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match &self.0 {
            Value::I32(v) => v.encode(env),
            Value::I64(v) => v.encode(env),
            Value::F32(_) | Value::F64(_) => encode_float(self.0.as_float().unwrap_or(0.0), env),
            Value::V128(v) => bytes_term(env, &v.to_le_bytes()),
            Value::Ref => atoms::ref_().encode(env),
        }
    }
}

/// A float as a term: `:nan`, `:infinity`, `:neg_infinity` for those Erlang
/// cannot represent.
pub fn encode_float(value: f64, env: Env<'_>) -> Term<'_> {
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
pub fn to_value(term: Term, ty: ValueType, kind: &str, position: usize) -> MunitionResult<Value> {
    // The label is formatted only on an error: most calls have none.
    let bad = |what: String| MunitionError::BadArgs(format!("{kind} {position}: {what}"));
    match ty {
        ValueType::I32 => {
            let v: i64 = term
                .decode()
                .map_err(|_| bad(format!("expected an integer for i32, got: {}", brief(term))))?;
            Value::i32_from(v).map_err(bad)
        }
        ValueType::I64 => {
            if let Ok(v) = term.decode::<i64>() {
                Ok(Value::I64(v))
            } else if let Ok(v) = term.decode::<u64>() {
                Ok(Value::i64_from_unsigned(v))
            } else if term.is_integer() {
                Err(bad(format!("{} is out of range for i64", brief(term))))
            } else {
                Err(bad(format!(
                    "expected an integer for i64, got: {}",
                    brief(term)
                )))
            }
        }
        ValueType::F32 => decode_float(term)
            .map(Value::f32_from)
            .ok_or_else(|| bad(format!("expected a float for f32, got: {}", brief(term)))),
        ValueType::F64 => decode_float(term)
            .map(Value::f64_from)
            .ok_or_else(|| bad(format!("expected a float for f64, got: {}", brief(term)))),
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

pub fn type_atom(ty: &ValueType) -> Atom {
    match ty {
        ValueType::I32 => atoms::i32(),
        ValueType::I64 => atoms::i64(),
        ValueType::F32 => atoms::f32(),
        ValueType::F64 => atoms::f64(),
        ValueType::V128 => atoms::v128(),
        ValueType::FuncRef | ValueType::ExternRef => atoms::ref_(),
    }
}

/// The value type an Elixir host function may take or return, from its atom:
/// `None` for any other atom (there is no way to pass a v128 or a reference).
pub fn atom_type(atom: Atom) -> Option<ValueType> {
    [
        ValueType::I32,
        ValueType::I64,
        ValueType::F32,
        ValueType::F64,
    ]
    .into_iter()
    .find(|ty| type_atom(ty) == atom)
}
