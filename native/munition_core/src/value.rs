//! Wasm values and value types as Munition speaks them, whichever engine
//! runs the guest: each engine converts its own values to and from these at
//! its edge, so everything above the engines (terms, the bridge, built-ins,
//! dumps) is written once. Also the rules for reading an Elixir integer or
//! float as a wasm value, which need no VM.

/// A wasm value. Floats are kept as their bits so NaN payloads survive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    V128(u128),
    /// A reference: never crosses to Elixir (it is shown as `:ref`).
    Ref,
}

/// A wasm value type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    I32,
    I64,
    F32,
    F64,
    V128,
    FuncRef,
    ExternRef,
}

impl Value {
    /// The value's type (`FuncRef` for a reference: which kind it was is
    /// not kept).
    pub fn ty(&self) -> ValueType {
        match self {
            Value::I32(_) => ValueType::I32,
            Value::I64(_) => ValueType::I64,
            Value::F32(_) => ValueType::F32,
            Value::F64(_) => ValueType::F64,
            Value::V128(_) => ValueType::V128,
            Value::Ref => ValueType::FuncRef,
        }
    }

    /// The value a result slot starts with.
    pub fn default_for(ty: ValueType) -> Value {
        match ty {
            ValueType::I32 => Value::I32(0),
            ValueType::I64 => Value::I64(0),
            ValueType::F32 => Value::F32(0),
            ValueType::F64 => Value::F64(0),
            ValueType::V128 => Value::V128(0),
            ValueType::FuncRef | ValueType::ExternRef => Value::Ref,
        }
    }

    /// An i32 from an integer in -2^31..2^32-1: the signed or the unsigned
    /// spelling of the same 32 bits.
    pub fn i32_from(v: i64) -> Result<Value, String> {
        if (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&v) {
            Ok(Value::I32(v as i32))
        } else {
            Err(format!("{v} is out of range for i32"))
        }
    }

    /// An i64 from the unsigned spelling of its bits.
    pub fn i64_from_unsigned(v: u64) -> Value {
        Value::I64(v as i64)
    }

    /// An f32 from a float (rounded to the nearest f32).
    pub fn f32_from(v: f64) -> Value {
        Value::F32((v as f32).to_bits())
    }

    pub fn f64_from(v: f64) -> Value {
        Value::F64(v.to_bits())
    }

    /// A float value as an f64, if it is one.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::F32(bits) => Some(f64::from(f32::from_bits(*bits))),
            Value::F64(bits) => Some(f64::from_bits(*bits)),
            _ => None,
        }
    }
}

impl ValueType {
    /// Whether an Elixir host function or a caller may pass values of this
    /// type (numbers only: there is no way to pass a v128 or a reference).
    pub fn passable(self) -> bool {
        matches!(
            self,
            ValueType::I32 | ValueType::I64 | ValueType::F32 | ValueType::F64
        )
    }
}

impl std::fmt::Display for ValueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ValueType::I32 => "i32",
            ValueType::I64 => "i64",
            ValueType::F32 => "f32",
            ValueType::F64 => "f64",
            ValueType::V128 => "v128",
            ValueType::FuncRef => "funcref",
            ValueType::ExternRef => "externref",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i32_takes_either_spelling_of_32_bits() {
        assert_eq!(Value::i32_from(-1), Ok(Value::I32(-1)));
        assert_eq!(Value::i32_from(u32::MAX as i64), Ok(Value::I32(-1)));
        assert_eq!(Value::i32_from(i32::MIN as i64), Ok(Value::I32(i32::MIN)));
        assert_eq!(
            Value::i32_from(u32::MAX as i64 + 1),
            Err("4294967296 is out of range for i32".into())
        );
        assert!(Value::i32_from(i32::MIN as i64 - 1).is_err());
    }

    #[test]
    fn i64_takes_the_unsigned_spelling() {
        assert_eq!(Value::i64_from_unsigned(u64::MAX), Value::I64(-1));
    }

    #[test]
    fn floats_keep_their_bits_and_read_back() {
        let nan = Value::f64_from(f64::NAN);
        assert!(nan.as_float().is_some_and(f64::is_nan));
        assert_eq!(Value::f32_from(1.5).as_float(), Some(1.5));
        assert_eq!(Value::f32_from(1.5).ty(), ValueType::F32);
        assert_eq!(Value::I32(1).as_float(), None);
    }

    #[test]
    fn result_slots_start_at_zero_of_their_type() {
        assert_eq!(Value::default_for(ValueType::I64), Value::I64(0));
        assert_eq!(Value::default_for(ValueType::ExternRef), Value::Ref);
    }

    #[test]
    fn only_numbers_cross_to_elixir() {
        assert!(ValueType::F64.passable());
        assert!(!ValueType::V128.passable());
        assert!(!ValueType::FuncRef.passable());
        assert_eq!(ValueType::ExternRef.to_string(), "externref");
    }
}
