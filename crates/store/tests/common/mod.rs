//! What the store's test suites build their data from.
use promotion_core::objects::ConfigObject;

/// An object of type `code` with the `n`th id and no fields, parent or references.
pub fn obj(code: &str, n: u32, name: &str) -> ConfigObject {
    ConfigObject {
        obj_code: code.into(),
        id: format!("{n:032x}"),
        name: name.into(),
        fields: Default::default(),
        parent: None,
        references: vec![],
        revision: 0,
        update_time: None,
    }
}
