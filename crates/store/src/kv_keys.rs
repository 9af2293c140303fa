//! Service secrets on the key-value engines: generated once, kept with the data.
use crate::engine::Engine;
use crate::error::Result;

/// Serialises first generations within the process; across processes the embedded
/// engines are never shared.
static GENERATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn key(name: &str) -> Vec<u8> {
    format!("secret/{name}").into_bytes()
}

pub(crate) async fn secret_key(engine: &dyn Engine, name: &str) -> Result<Vec<u8>> {
    if let Some(k) = engine.get(&key(name))? {
        return Ok(k);
    }
    let _generating = GENERATING.lock().await;
    if let Some(k) = engine.get(&key(name))? {
        return Ok(k);
    }
    // Two version-4 UUIDs: 244 random bits from the operating system's generator.
    let mut secret = uuid::Uuid::new_v4().into_bytes().to_vec();
    secret.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    engine.apply(vec![(key(name), Some(secret.clone()))])?;
    engine.flush()?;
    Ok(secret)
}
