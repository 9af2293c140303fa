//! Commits too large for one engine batch. sled pins every page a batch replaces until
//! the batch ends (one 20,000-key batch peaks near 3 GiB; 1,000-key batches stay near
//! 250 MiB for a million keys), so a large commit is applied in small batches behind a
//! durable journal of the before-image of every key it touches. Opening the store rolls
//! back any journal still present: a crash leaves all of a commit or none of it, and a
//! commit is acknowledged only once its journal is gone.
//!
//! Keys: `J{commit:016x}\0c{n:08}` chunks of (key, before) pairs, then `J{commit:016x}\0h`
//! once every chunk is written. A journal without its header never got as far as
//! changing data and is simply dropped.
use crate::codec::{decode, encode};
use crate::engine::{scan_prefix, Engine, Op};
use crate::error::Result;

/// Keys per batch of a large commit.
pub const BATCH_KEYS: usize = 1000;
/// Above this many key operations a commit goes through the journal.
pub const SINGLE_BATCH_MAX_OPS: usize = 20_000;
const JOURNAL: &[u8] = b"J";

fn commit_prefix(id: u64) -> Vec<u8> {
    let mut k = JOURNAL.to_vec();
    k.extend_from_slice(format!("{id:016x}\0").as_bytes());
    k
}

/// Applies `ops` atomically and durably, in one batch or through the journal.
pub fn apply(engine: &dyn Engine, ops: Vec<Op>) -> Result<()> {
    if ops.len() <= SINGLE_BATCH_MAX_OPS || engine.unbounded_batches() {
        engine.apply(ops)?;
        return engine.flush();
    }
    let id = next_id(engine)?;
    let prefix = commit_prefix(id);
    let mut seen = std::collections::HashSet::new();
    let mut chunk: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let mut n = 0;
    for (k, _) in &ops {
        if !seen.insert(k.as_slice()) {
            continue;
        }
        chunk.push((k.clone(), engine.get(k)?));
        if chunk.len() == BATCH_KEYS {
            write_chunk(engine, &prefix, n, &chunk)?;
            chunk.clear();
            n += 1;
        }
    }
    if !chunk.is_empty() {
        write_chunk(engine, &prefix, n, &chunk)?;
    }
    drop(seen);
    let mut header = prefix.clone();
    header.push(b'h');
    engine.apply(vec![(header, Some(Vec::new()))])?;
    engine.flush()?;
    let mut ops = ops;
    while !ops.is_empty() {
        let rest = ops.split_off(ops.len().min(BATCH_KEYS));
        engine.apply(std::mem::replace(&mut ops, rest))?;
    }
    engine.flush()?;
    drop_journal(engine, &prefix)?;
    engine.flush()
}

fn write_chunk(engine: &dyn Engine, prefix: &[u8], n: usize, pairs: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("c{n:08}").as_bytes());
    engine.apply(vec![(key, Some(encode(pairs)))])
}

fn next_id(engine: &dyn Engine) -> Result<u64> {
    // Journals are removed once their commit is durable, so ids only need to be unique
    // among journals present at once; the clock gives that without a counter key.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let last = scan_prefix(engine, JOURNAL, true)
        .next()
        .transpose()?
        .map(|(k, _)| std::str::from_utf8(&k[1..17]).ok().and_then(|s| u64::from_str_radix(s, 16).ok()).unwrap_or(0));
    Ok(now.max(last.unwrap_or(0) + 1))
}

fn drop_journal(engine: &dyn Engine, prefix: &[u8]) -> Result<()> {
    let keys: Vec<Vec<u8>> = scan_prefix(engine, prefix, false).map(|r| r.map(|(k, _)| k)).collect::<Result<_>>()?;
    for chunk in keys.chunks(BATCH_KEYS) {
        engine.apply(chunk.iter().map(|k| (k.clone(), None)).collect())?;
    }
    Ok(())
}

/// Rolls back every commit a crash interrupted. Returns how many there were.
pub fn recover(engine: &dyn Engine) -> Result<usize> {
    let mut commits: Vec<Vec<u8>> = Vec::new();
    for item in scan_prefix(engine, JOURNAL, false) {
        let (k, _) = item?;
        let prefix = k[..18].to_vec();
        if commits.last() != Some(&prefix) {
            commits.push(prefix);
        }
    }
    let mut rolled_back = 0;
    for prefix in &commits {
        let mut header = prefix.clone();
        header.push(b'h');
        if engine.get(&header)?.is_some() {
            let mut chunk_prefix = prefix.clone();
            chunk_prefix.push(b'c');
            let chunks: Vec<Vec<u8>> =
                scan_prefix(engine, &chunk_prefix, false).map(|r| r.map(|(_, v)| v)).collect::<Result<_>>()?;
            for chunk in chunks {
                let pairs: Vec<(Vec<u8>, Option<Vec<u8>>)> = decode(&chunk)?;
                engine.apply(pairs)?;
            }
            rolled_back += 1;
        }
        engine.flush()?;
        drop_journal(engine, prefix)?;
    }
    engine.flush()?;
    Ok(rolled_back)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::MemoryEngine;

    fn ops(n: usize, value: &str) -> Vec<Op> {
        (0..n).map(|i| (format!("k{i:06}").into_bytes(), Some(value.as_bytes().to_vec()))).collect()
    }

    #[test]
    fn a_large_commit_applies_whole_and_leaves_no_journal() {
        let e = MemoryEngine::default();
        apply(&e, ops(SINGLE_BATCH_MAX_OPS + 10, "a")).unwrap();
        assert_eq!(e.get(b"k000000").unwrap(), Some(b"a".to_vec()));
        assert!(scan_prefix(&e, JOURNAL, false).next().is_none());
    }

    #[test]
    fn recovery_restores_the_before_image_of_an_interrupted_commit() {
        let e = MemoryEngine::default();
        e.apply(vec![(b"k000001".to_vec(), Some(b"old".to_vec()))]).unwrap();
        // A journal written in full, then part of the data: what a crash leaves.
        let prefix = commit_prefix(7);
        write_chunk(&e, &prefix, 0, &[(b"k000001".to_vec(), Some(b"old".to_vec())), (b"k000002".to_vec(), None)])
            .unwrap();
        let mut header = prefix.clone();
        header.push(b'h');
        e.apply(vec![(header, Some(vec![]))]).unwrap();
        e.apply(vec![(b"k000001".to_vec(), Some(b"new".to_vec())), (b"k000002".to_vec(), Some(b"new".to_vec()))])
            .unwrap();
        assert_eq!(recover(&e).unwrap(), 1);
        assert_eq!(e.get(b"k000001").unwrap(), Some(b"old".to_vec()));
        assert_eq!(e.get(b"k000002").unwrap(), None);
        assert!(scan_prefix(&e, JOURNAL, false).next().is_none());
        // A journal without its header changed nothing yet and is only dropped.
        write_chunk(&e, &commit_prefix(8), 0, &[(b"k000001".to_vec(), None)]).unwrap();
        assert_eq!(recover(&e).unwrap(), 0);
        assert_eq!(e.get(b"k000001").unwrap(), Some(b"old".to_vec()));
    }
}
