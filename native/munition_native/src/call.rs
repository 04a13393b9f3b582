//! Calling an export of a live instance, and converting values between Erlang
//! terms and wasm.

use rustler::{Atom, Binary, Encoder, Env, NewBinary, ResourceArc, Term};
use wasmtime::{Val, ValType};

use crate::atoms;
use crate::engine::FIRST_SLICE;
use crate::error::{MunitionError, MunitionResult};
use crate::instance::{advance, InstanceRef, Live, Progress, Step};
use crate::module::val_type_atom;
use crate::OwnedBytes;

/// A wasm value on its way to Elixir. Floats that Erlang cannot represent
/// (NaN and the infinities) become the atoms `:nan`, `:infinity` and
/// `:neg_infinity`; a v128 becomes a 16-byte little-endian binary.
pub struct WasmValue(pub Val);

impl Encoder for WasmValue {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match &self.0 {
            Val::I32(v) => v.encode(env),
            Val::I64(v) => v.encode(env),
            Val::F32(bits) => encode_float(f32::from_bits(*bits) as f64, env),
            Val::F64(bits) => encode_float(f64::from_bits(*bits), env),
            Val::V128(v) => crate::bytes_term(env, &v.as_u128().to_le_bytes()),
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

/// Converts one Elixir value (`label` says which, for errors: "argument 0")
/// to the wasm type declared for it. i32 takes -2^31..2^32-1 (signed or
/// unsigned spelling of the same bits), i64 likewise for 64 bits; floats take
/// Elixir floats and `:nan`, `:infinity`, `:neg_infinity`.
pub fn to_val(term: Term, ty: &ValType, label: &str) -> MunitionResult<Val> {
    let bad = |what: String| MunitionError::BadArgs(format!("{label}: {what}"));
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

/// A term for an error message, cut short: a caller's or host function's
/// mistake may be a huge term, and the message must stay small.
pub fn brief(term: Term) -> String {
    let mut text = format!("{term:?}");
    if text.len() > 200 {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// An Elixir float, or one of the atoms Munition uses for the floats Erlang
/// cannot represent (as `WasmValue` encodes them), so they round-trip.
fn decode_float(term: Term) -> Option<f64> {
    if term.is_float() {
        return term.decode::<f64>().ok();
    }
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

#[derive(rustler::NifMap)]
#[rustler(encode)]
pub struct CallMeta {
    pub fuel_consumed: u64,
    pub fuel_remaining: u64,
    pub execution_time_us: u64,
    pub log: Vec<(i32, OwnedBytes)>,
}

/// Calls `function` with `params` and runs the first slice of it. Argument
/// errors come back as `{:error, {:bad_args, _}}` before any guest code runs.
#[rustler::nif]
fn instance_call<'a>(
    env: Env<'a>,
    instance: ResourceArc<InstanceRef>,
    function: String,
    params: Vec<Term<'a>>,
) -> MunitionResult<Progress> {
    let mut slot = instance.lock();
    let live = slot.idle()?;
    let wasm_instance = live.instance.ok_or_else(|| {
        MunitionError::InvalidState("instance did not finish instantiating".into())
    })?;
    let func = wasm_instance
        .get_func(&mut live.store, &function)
        .ok_or_else(|| MunitionError::FunctionNotFound(function.clone()))?;
    let ty = func.ty(&live.store);

    if params.len() != ty.params().len() {
        return Err(MunitionError::BadArgs(format!(
            "{function} takes {} argument(s) ({:?}), got {}",
            ty.params().len(),
            ty.params().map(|t| val_type_atom(&t)).collect::<Vec<_>>(),
            params.len()
        )));
    }
    let vals = params
        .iter()
        .zip(ty.params())
        .enumerate()
        .map(|(position, (term, ty))| to_val(*term, &ty, &format!("argument {position}")))
        .collect::<MunitionResult<Vec<Val>>>()?;
    let mut results: Vec<Val> = ty
        .results()
        .map(|t| Val::default_for_ty(&t).unwrap_or(Val::I32(0)))
        .collect();

    slot.start(|mut live| async move {
        let result = func.call_async(&mut live.store, &vals, &mut results).await;
        (live, result.map(|()| Step::Returned(results)))
    })?;
    advance(env, &mut slot, FIRST_SLICE)
}

fn guest_memory(live: &mut Live) -> MunitionResult<wasmtime::Memory> {
    live.instance
        .and_then(|instance| instance.get_memory(&mut live.store, "memory"))
        .ok_or_else(|| {
            MunitionError::OutOfBounds("the guest exports no memory named \"memory\"".into())
        })
}

/// Reads guest memory for the binary ABI (`result: :binary`), straight into
/// the binary it returns. Dirty: a guest decides how much there is to copy.
#[rustler::nif(schedule = "DirtyCpu")]
fn instance_memory_read<'a>(
    env: Env<'a>,
    instance: ResourceArc<InstanceRef>,
    ptr: u64,
    len: u64,
) -> MunitionResult<Binary<'a>> {
    let mut slot = instance.lock();
    let live = slot.idle()?;
    let memory = guest_memory(live)?;
    let data = memory.data(&live.store);
    let bytes = usize::try_from(ptr)
        .ok()
        .zip(usize::try_from(len).ok())
        .and_then(|(start, len)| data.get(start..start.checked_add(len)?))
        .ok_or_else(|| {
            MunitionError::OutOfBounds(format!(
                "range {ptr}+{len} is outside guest memory of {} bytes",
                data.len()
            ))
        })?;
    let mut binary = NewBinary::new(env, bytes.len());
    binary.as_mut_slice().copy_from_slice(bytes);
    Ok(binary.into())
}

/// Writes a binary argument into guest memory (at a pointer the guest's
/// allocator returned). Dirty: the caller decides how much there is to copy.
#[rustler::nif(schedule = "DirtyCpu")]
fn instance_memory_write(
    instance: ResourceArc<InstanceRef>,
    ptr: u64,
    bytes: Binary,
) -> MunitionResult<Atom> {
    let mut slot = instance.lock();
    let live = slot.idle()?;
    let memory = guest_memory(live)?;
    let data = memory.data_mut(&mut live.store);
    let size = data.len();
    let target = usize::try_from(ptr)
        .ok()
        .and_then(|start| data.get_mut(start..start.checked_add(bytes.len())?))
        .ok_or_else(|| {
            MunitionError::OutOfBounds(format!(
                "range {ptr}+{} is outside guest memory of {size} bytes",
                bytes.len()
            ))
        })?;
    target.copy_from_slice(bytes.as_slice());
    Ok(atoms::ok())
}
