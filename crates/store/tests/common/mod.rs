//! What the store's test suites build their data from.
use promotion_core::objects::ConfigObject;

/// An object of type `code` with the `n`th id and no fields, parent or references.
pub fn obj(code: &str, n: u32, name: &str) -> ConfigObject {
    ConfigObject::new(code, format!("{n:032x}"), name)
}
