//! How records are encoded on the embedded engines: JSON, decoded into typed records
//! here so that nothing outside this crate handles stored bytes.
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Result, StoreError};

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("stored records serialise")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(format!("corrupt record: {e}")))
}
