//! The views' key space. The store keeps view records and each generation's position and
//! summary as opaque bytes (`projection::codec` makes them); it knows nothing of what they mean.
//!
//! Each generation of views is a sled tree of its own, `views-{generation}`, so that a retired
//! one is dropped whole rather than key by key (a rebuild retires ≈ one key per entity):
//!
//! | tree | key | value |
//! |---|---|---|
//! | default | `Mviews` | the live generation (u32) and its view format (u8) |
//! | `views-{g}` | `E` stream name | the stream's view record |
//! | `views-{g}` | `P` | the position the generation reflects (u64), then its summary |
//!
//! A generation is one complete set of views. The live one is updated after each commit group
//! (records, position and summary in one batch of its tree); a rebuild fills a fresh one, and
//! the switch is the one write of `Mviews` after the batch that brings the new generation to the
//! live position: a crash between the two leaves the old generation live and the new one an
//! orphan, removed at the next start. View writes are not fsynced on their own: they become
//! durable with the next commit's sync, and on open the projector catches up from the position
//! its generation recorded, so a crash between a commit and its views loses nothing.

use super::{Store, StoreError, engine, keys};
use crate::domain::Position;

const META_VIEWS: &[u8] = b"Mviews";
const RECORD: u8 = b'E';
const POSITION: &[u8] = b"P";
const TREE_PREFIX: &str = "views-";

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

fn tree_name(generation: u32) -> String {
    format!("{TREE_PREFIX}{generation}")
}

fn record_key(stream: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + 1);
    key.push(RECORD);
    key.extend_from_slice(stream.as_bytes());
    key
}

impl Store {
    /// The live generation, if views were ever written.
    pub fn views_meta(&self) -> Result<Option<ViewsMeta>, StoreError> {
        engine("reading the views", || match self.db.get(META_VIEWS)? {
            None => Ok(None),
            Some(value) => match value.as_ref() {
                [g0, g1, g2, g3, format] => {
                    Ok(Some(ViewsMeta { generation: u32::from_be_bytes([*g0, *g1, *g2, *g3]), format: *format }))
                }
                _ => Err(StoreError::corrupt("views meta", "malformed value")),
            },
        })
    }

    /// The position a generation reflects and its summary's bytes; `None` for an unwritten one.
    pub fn views_position(&self, generation: u32) -> Result<Option<(Position, Vec<u8>)>, StoreError> {
        engine("reading the views", || match self.generation(generation)?.get(POSITION)? {
            None => Ok(None),
            Some(value) if value.len() >= 8 => {
                Ok(Some((Position(u64::from_be_bytes(value[..8].try_into().expect("8 bytes"))), value[8..].to_vec())))
            }
            Some(_) => Err(StoreError::corrupt(format!("views generation {generation}"), "malformed position")),
        })
    }

    /// One stream's view record in a generation.
    pub fn view(&self, generation: u32, stream: &str) -> Result<Option<Vec<u8>>, StoreError> {
        engine("reading the views", || Ok(self.generation(generation)?.get(record_key(stream))?.map(|v| v.to_vec())))
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
                let mut key = record_key(after);
                key.push(0);
                key
            }
            None => record_key(prefix),
        };
        let prefix_key = record_key(prefix);
        let entries = match self.generation(generation) {
            Ok(tree) => {
                Box::new(tree.range(start..)) as Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>>
            }
            Err(e) => {
                let error = std::sync::Mutex::new(Some(e));
                return Box::new(std::iter::from_fn(move || error.lock().expect("error").take().map(Err)))
                    as Box<dyn Iterator<Item = Result<(String, Vec<u8>), StoreError>>>;
            }
        };
        Box::new(super::Guarded::new(
            "reading the views",
            entries.take_while(move |entry| entry.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix_key))).map(
                |entry| {
                    let (key, value) = entry?;
                    let stream = std::str::from_utf8(&key[1..])
                        .map_err(|_| StoreError::corrupt("views", "a view key is not UTF-8"))?
                        .to_owned();
                    Ok((stream, value.to_vec()))
                },
            ),
        ))
    }

    /// Applies a view write atomically (no sync of its own; see the module documentation).
    pub fn write_views(&self, write: ViewWrite) -> Result<(), StoreError> {
        engine("writing the views", || {
            let mut batch = sled::Batch::default();
            for (stream, bytes) in write.records {
                batch.insert(record_key(&stream), bytes);
            }
            let mut position = write.position.0.to_be_bytes().to_vec();
            position.extend_from_slice(&write.summary);
            batch.insert(POSITION, position);
            self.generation(write.generation)?.apply_batch(batch)?;
            if let Some(meta) = write.activate {
                let mut value = meta.generation.to_be_bytes().to_vec();
                value.push(meta.format);
                self.db.insert(META_VIEWS, value)?;
            }
            Ok(())
        })
    }

    /// A generation's tree (sled keeps opened trees: this is a look-up after the first call).
    fn generation(&self, generation: u32) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(tree_name(generation))?)
    }

    /// Every generation that has a tree, live or not.
    pub fn view_generations(&self) -> Result<Vec<u32>, StoreError> {
        engine("reading the views", || {
            let mut generations: Vec<u32> = self
                .db
                .tree_names()
                .iter()
                .filter_map(|name| std::str::from_utf8(name).ok()?.strip_prefix(TREE_PREFIX)?.parse().ok())
                .collect();
            generations.sort_unstable();
            Ok(generations)
        })
    }

    /// Drops a generation that is not live, whole.
    pub fn drop_views(&self, generation: u32) -> Result<(), StoreError> {
        engine("dropping old views", || {
            self.db.drop_tree(tree_name(generation))?;
            Ok(())
        })
    }

    /// Removes up to `max_keys` keys of the views' first layout (view format 1 kept them in the
    /// default tree under `V`); `true` once none is left.
    pub fn clear_legacy_views(&self, max_keys: usize) -> Result<bool, StoreError> {
        engine("removing old views", || {
            let mut batch = sled::Batch::default();
            let mut count = 0;
            for key in self.db.scan_prefix([keys::VIEWS]).keys().take(max_keys) {
                batch.remove(key?);
                count += 1;
            }
            self.db.apply_batch(batch)?;
            Ok(count < max_keys)
        })
    }

    /// Makes every write so far durable (sled `flush`, then `fdatasync`): what a clean stop
    /// does after the last view write.
    pub fn sync_all(&self) -> Result<(), StoreError> {
        engine("syncing", || self.sync().map(drop))
    }
}
