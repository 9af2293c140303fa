//! Service secrets on the key-value engines: generated once, kept with the data, the same
//! for every process sharing the engine.
use crate::engine::Engine;
use crate::error::Result;

/// Serialises first generations within the process; across processes the engine's lock
/// on the key does.
static GENERATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn key(name: &str) -> Vec<u8> {
    format!("secret/{name}").into_bytes()
}

pub(crate) async fn secret_key(engine: &dyn Engine, name: &str) -> Result<Vec<u8>> {
    if let Some(k) = engine.get(&key(name))? {
        return Ok(k);
    }
    let _generating = GENERATING.lock().await;
    // Another replica may be generating it at this moment: whoever takes the lock first
    // writes it, the other reads it back.
    let held = engine.hold(&key(name)).await?;
    if let Some(k) = engine.get(&key(name))? {
        return Ok(k);
    }
    // Two version-4 UUIDs: 244 random bits from the operating system's generator.
    let mut secret = uuid::Uuid::new_v4().into_bytes().to_vec();
    secret.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let ops = vec![(key(name), Some(secret.clone()))];
    match held {
        Some(held) => held.apply(ops)?,
        None => {
            engine.apply(ops)?;
            engine.flush()?;
        }
    }
    Ok(secret)
}
