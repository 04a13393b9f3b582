//! Wasm values between Wasmi's types and the ones the engine-independent
//! code speaks (`crate::value`, the bridge, the capture), which are
//! Wasmtime's: one conversion each way, so terms are encoded and decoded in
//! one place for both engines.

use wasmi::{Val, ValType, F32, F64, V128};

use crate::error::{MunitionError, MunitionResult};

/// A Wasmi value as the shared code's value. References cannot cross (they
/// are encoded as `:ref` either way): a null function reference stands in.
pub fn to_shared(value: &Val) -> wasmtime::Val {
    match value {
        Val::I32(v) => wasmtime::Val::I32(*v),
        Val::I64(v) => wasmtime::Val::I64(*v),
        Val::F32(v) => wasmtime::Val::F32(v.to_bits()),
        Val::F64(v) => wasmtime::Val::F64(v.to_bits()),
        Val::V128(v) => wasmtime::Val::V128(v.as_u128().into()),
        Val::FuncRef(_) | Val::ExternRef(_) => wasmtime::Val::FuncRef(None),
    }
}

/// A shared value (decoded by `crate::value::to_val` for a numeric type) as
/// Wasmi's.
pub fn from_shared(value: &wasmtime::Val) -> MunitionResult<Val> {
    Ok(match value {
        wasmtime::Val::I32(v) => Val::I32(*v),
        wasmtime::Val::I64(v) => Val::I64(*v),
        wasmtime::Val::F32(bits) => Val::F32(F32::from_bits(*bits)),
        wasmtime::Val::F64(bits) => Val::F64(F64::from_bits(*bits)),
        wasmtime::Val::V128(v) => Val::V128(V128::from(v.as_u128())),
        _ => {
            return Err(MunitionError::BadArgs(
                "references cannot be passed from Elixir".into(),
            ))
        }
    })
}

/// A Wasmi value type as the shared code's.
pub fn type_to_shared(ty: &ValType) -> wasmtime::ValType {
    match ty {
        ValType::I32 => wasmtime::ValType::I32,
        ValType::I64 => wasmtime::ValType::I64,
        ValType::F32 => wasmtime::ValType::F32,
        ValType::F64 => wasmtime::ValType::F64,
        ValType::V128 => wasmtime::ValType::V128,
        ValType::FuncRef => wasmtime::ValType::FUNCREF,
        ValType::ExternRef => wasmtime::ValType::EXTERNREF,
    }
}

/// A shared value type (one an Elixir host function or a built-in may
/// take: numbers) as Wasmi's.
pub fn type_from_shared(ty: &wasmtime::ValType) -> ValType {
    match ty {
        wasmtime::ValType::I32 => ValType::I32,
        wasmtime::ValType::I64 => ValType::I64,
        wasmtime::ValType::F32 => ValType::F32,
        wasmtime::ValType::F64 => ValType::F64,
        wasmtime::ValType::V128 => ValType::V128,
        wasmtime::ValType::Ref(r) if r.heap_type().is_func() => ValType::FuncRef,
        wasmtime::ValType::Ref(_) => ValType::ExternRef,
    }
}

/// The value of type `ty` that a result slot starts with.
pub fn default_for(ty: &ValType) -> Val {
    Val::default_for_ty(*ty)
}
