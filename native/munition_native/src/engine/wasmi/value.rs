//! Wasm values between Wasmi's types and Munition's
//! (`munition_core::value`): one conversion each way, at the engine's edge.

use wasmi::{Val, ValType, F32, F64, V128};

use crate::vocabulary::value::{Value, ValueType};

pub fn from_val(value: &Val) -> Value {
    match value {
        Val::I32(v) => Value::I32(*v),
        Val::I64(v) => Value::I64(*v),
        Val::F32(v) => Value::F32(v.to_bits()),
        Val::F64(v) => Value::F64(v.to_bits()),
        Val::V128(v) => Value::V128(v.as_u128()),
        Val::FuncRef(_) | Val::ExternRef(_) => Value::Ref,
    }
}

/// A value as Wasmi's; a reference cannot come from Elixir, and stands in
/// as a null function reference.
pub fn to_val(value: &Value) -> Val {
    match value {
        Value::I32(v) => Val::I32(*v),
        Value::I64(v) => Val::I64(*v),
        Value::F32(bits) => Val::F32(F32::from_bits(*bits)),
        Value::F64(bits) => Val::F64(F64::from_bits(*bits)),
        Value::V128(v) => Val::V128(V128::from(*v)),
        Value::Ref => Val::default_for_ty(ValType::FuncRef),
    }
}

pub fn from_type(ty: &ValType) -> ValueType {
    match ty {
        ValType::I32 => ValueType::I32,
        ValType::I64 => ValueType::I64,
        ValType::F32 => ValueType::F32,
        ValType::F64 => ValueType::F64,
        ValType::V128 => ValueType::V128,
        ValType::FuncRef => ValueType::FuncRef,
        ValType::ExternRef => ValueType::ExternRef,
    }
}

pub fn to_type(ty: &ValueType) -> ValType {
    match ty {
        ValueType::I32 => ValType::I32,
        ValueType::I64 => ValType::I64,
        ValueType::F32 => ValType::F32,
        ValueType::F64 => ValType::F64,
        ValueType::V128 => ValType::V128,
        ValueType::FuncRef => ValType::FuncRef,
        ValueType::ExternRef => ValType::ExternRef,
    }
}
