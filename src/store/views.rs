//! The views' key space. The store keeps view records and each generation's position and
//! summary as opaque bytes (`projection::codec` makes them); it knows nothing of what they mean.
//!
//! | key | value |
//! |---|---|
//! | `Mviews` | the active generation (u32) and its view format (u8) |
//! | `V` generation (u32) `E` stream name | the stream's view record |
//! | `V` generation (u32) `P` | the position the generation reflects (u64), then its summary |
//!
//! A generation is one complete set of views. The live one is updated after each commit group;
//! a rebuild fills a fresh one, and the switch is one write of `Mviews` in the batch that brings
//! the new generation to the live position. View writes are not fsynced on their own: they become
//! durable with the next commit's sync, and on open the projector catches up from the position
//! its generation recorded, so a crash between a commit and its views loses nothing.

use super::{Store, StoreError, keys};
use crate::domain::Position;

const META_VIEWS: &[u8] = b"Mviews";
const RECORD: u8 = b'E';
const POSITION: u8 = b'P';

/// Which generation of views is live, and in which view format it was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewsMeta {
    pub generation: u32,
    pub format: u8,
}

/// One atomic write to a generation of views.
#[derive(Debug)]
pub struct ViewWrite {
    pub generation: u32,
    /// (stream name, record bytes).
    pub records: Vec<(String, Vec<u8>)>,
    /// The position the generation reflects after this write, and its summary's bytes.
    pub position: Position,
    pub summary: Vec<u8>,
    /// Makes this generation the live one, in the same batch.
    pub activate: Option<ViewsMeta>,
}

fn generation_prefix(generation: u32) -> [u8; 5] {
    let mut key = [keys::VIEWS; 5];
    key[1..].copy_from_slice(&generation.to_be_bytes());
    key
}

fn record_key(generation: u32, stream: &str) -> Vec<u8> {
    let mut key = generation_prefix(generation).to_vec();
    key.push(RECORD);
    key.extend_from_slice(stream.as_bytes());
    key
}

fn position_key(generation: u32) -> Vec<u8> {
    let mut key = generation_prefix(generation).to_vec();
    key.push(POSITION);
    key
}

impl Store {
    /// The live generation, if views were ever written.
    pub fn views_meta(&self) -> Result<Option<ViewsMeta>, StoreError> {
        match self.db.get(META_VIEWS)? {
            None => Ok(None),
            Some(value) => match value.as_ref() {
                [g0, g1, g2, g3, format] => {
                    Ok(Some(ViewsMeta { generation: u32::from_be_bytes([*g0, *g1, *g2, *g3]), format: *format }))
                }
                _ => Err(StoreError::corrupt("views meta", "malformed value")),
            },
        }
    }

    /// The position a generation reflects and its summary's bytes; `None` for an unwritten one.
    pub fn views_position(&self, generation: u32) -> Result<Option<(Position, Vec<u8>)>, StoreError> {
        match self.db.get(position_key(generation))? {
            None => Ok(None),
            Some(value) if value.len() >= 8 => {
                Ok(Some((Position(u64::from_be_bytes(value[..8].try_into().expect("8 bytes"))), value[8..].to_vec())))
            }
            Some(_) => Err(StoreError::corrupt(format!("views generation {generation}"), "malformed position")),
        }
    }

    /// One stream's view record in a generation.
    pub fn view(&self, generation: u32, stream: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(record_key(generation, stream))?.map(|v| v.to_vec()))
    }

    /// The view records of a generation whose stream starts with `prefix`, in stream-name order,
    /// starting after the stream `after` if given.
    pub fn views(
        &self,
        generation: u32,
        prefix: &str,
        after: Option<&str>,
    ) -> impl Iterator<Item = Result<(String, Vec<u8>), StoreError>> + '_ {
        let start = match after {
            // The smallest key greater than `after`'s.
            Some(after) => {
                let mut key = record_key(generation, after);
                key.push(0);
                key
            }
            None => record_key(generation, prefix),
        };
        let prefix_key = record_key(generation, prefix);
        let skip = prefix_key.len() - prefix.len();
        self.db
            .range(start..)
            .take_while(move |entry| entry.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix_key)))
            .map(move |entry| {
                let (key, value) = entry?;
                let stream = std::str::from_utf8(&key[skip..])
                    .map_err(|_| StoreError::corrupt("views", "a view key is not UTF-8"))?
                    .to_owned();
                Ok((stream, value.to_vec()))
            })
    }

    /// Applies a view write atomically (no sync of its own; see the module documentation).
    pub fn write_views(&self, write: ViewWrite) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (stream, bytes) in write.records {
            batch.insert(record_key(write.generation, &stream), bytes);
        }
        let mut position = write.position.0.to_be_bytes().to_vec();
        position.extend_from_slice(&write.summary);
        batch.insert(position_key(write.generation), position);
        if let Some(meta) = write.activate {
            let mut value = meta.generation.to_be_bytes().to_vec();
            value.push(meta.format);
            batch.insert(META_VIEWS, value);
        }
        Ok(self.db.apply_batch(batch)?)
    }

    /// Every generation that has keys, live or not.
    pub fn view_generations(&self) -> Result<Vec<u32>, StoreError> {
        let mut generations = Vec::new();
        let mut from = generation_prefix(0).to_vec();
        while let Some((key, _)) = self.db.range(from..).next().transpose()? {
            let [keys::VIEWS, g0, g1, g2, g3, ..] = key.as_ref() else { break };
            let generation = u32::from_be_bytes([*g0, *g1, *g2, *g3]);
            generations.push(generation);
            match generation.checked_add(1) {
                Some(next) => from = generation_prefix(next).to_vec(),
                None => break,
            }
        }
        Ok(generations)
    }

    /// Removes up to `max_keys` keys of a generation that is not live; `true` once it has none.
    pub fn clear_views(&self, generation: u32, max_keys: usize) -> Result<bool, StoreError> {
        let prefix = generation_prefix(generation);
        let mut batch = sled::Batch::default();
        let mut count = 0;
        for entry in self.db.scan_prefix(prefix).keys().take(max_keys) {
            batch.remove(entry?);
            count += 1;
        }
        self.db.apply_batch(batch)?;
        Ok(count < max_keys)
    }

    /// Makes every write so far durable (sled `flush`, then `fdatasync`): what a clean stop
    /// does after the last view write.
    pub fn sync_all(&self) -> Result<(), StoreError> {
        self.sync()
    }
}
