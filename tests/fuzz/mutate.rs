//! Mutators: strategies that take a valid input (one of the seeds) and damage it the way a disk,
//! a network or an attacker would, at the level of bytes and, for JSON, of its values.

use proptest::prelude::*;
use serde_json::Value;

/// A place in a sequence of any length, as a fraction of it: shrinks towards the start.
#[derive(Clone, Copy, Debug)]
pub struct Index(pub u64);

impl Index {
    /// The place `at` of a sequence of `len` items.
    pub fn of(at: usize, len: usize) -> Self {
        Self((((at as u128) << 64).div_ceil(len as u128)) as u64)
    }

    /// The item it points at in a sequence of `len` (> 0) items.
    pub fn index(&self, len: usize) -> usize {
        ((len as u128 * u128::from(self.0)) >> 64) as usize
    }
}

impl Arbitrary for Index {
    type Parameters = ();
    type Strategy = prop::strategy::Map<prop::num::u64::Any, fn(u64) -> Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        any::<u64>().prop_map(Self)
    }
}

/// Values a length or count field is set to: the ends of `u32`, the powers of two a decoder may
/// trip on, small ones, and anything.
fn length() -> impl Strategy<Value = Length> {
    prop_oneof![
        prop::sample::select(vec![u32::MAX, u32::MAX - 1, 0x8000_0000, 0x7fff_ffff, 1 << 24, 1 << 20, 0x1_0000, 0])
            .prop_map(Length::Set),
        any::<u32>().prop_map(Length::Set),
        (-4i8..=4).prop_map(Length::Add),
    ]
}

#[derive(Clone, Copy, Debug)]
pub enum Length {
    Set(u32),
    Add(i8),
}

/// One change to a byte string.
#[derive(Clone, Debug)]
pub enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Remove(Index, usize),
    Insert(Index, Vec<u8>),
    /// Copies a piece of another seed (by index, start, length) over the bytes at a place.
    Splice {
        seed: Index,
        from: Index,
        len: usize,
        at: Index,
    },
    /// Repeats a piece of the bytes right after itself.
    Repeat {
        from: Index,
        len: usize,
        times: usize,
    },
    /// Changes one of the big-endian `u32`s that could be a length or count: one whose value is
    /// at most what follows it (any `u32` when there is none).
    Length(Index, Length),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, value)| Mutation::SetByte(at, value)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), 1..40usize).prop_map(|(at, len)| Mutation::Remove(at, len)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        1 => (any::<Index>(), any::<Index>(), 1..200usize, any::<Index>())
            .prop_map(|(seed, from, len, at)| Mutation::Splice { seed, from, len, at }),
        1 => (any::<Index>(), 1..64usize, 1..8usize).prop_map(|(from, len, times)| Mutation::Repeat { from, len, times }),
        3 => (any::<Index>(), length()).prop_map(|(at, length)| Mutation::Length(at, length)),
    ]
}

/// The offsets of the `u32`s of `bytes` that could be a length or a count.
pub fn length_like(bytes: &[u8]) -> Vec<usize> {
    (0..bytes.len().saturating_sub(3))
        .filter(|&at| {
            let value = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
            value as usize <= bytes.len() - at - 4
        })
        .collect()
}

/// Applies `mutation` to `bytes`; `seeds` are what a splice copies from.
pub fn apply(bytes: &mut Vec<u8>, seeds: &[Vec<u8>], mutation: &Mutation) {
    let place = |at: &Index, len: usize| if len == 0 { 0 } else { at.index(len) };
    match mutation {
        Mutation::FlipBit(at, bit) if !bytes.is_empty() => {
            let at = place(at, bytes.len());
            bytes[at] ^= 1 << bit;
        }
        Mutation::SetByte(at, value) if !bytes.is_empty() => {
            let at = place(at, bytes.len());
            bytes[at] = *value;
        }
        Mutation::Truncate(at) => bytes.truncate(place(at, bytes.len())),
        Mutation::Remove(at, len) => {
            let at = place(at, bytes.len());
            bytes.drain(at..(at + len).min(bytes.len()));
        }
        Mutation::Insert(at, inserted) => {
            let at = place(at, bytes.len() + 1);
            bytes.splice(at..at, inserted.iter().copied());
        }
        Mutation::Splice { seed, from, len, at } if !seeds.is_empty() => {
            let source = &seeds[seed.index(seeds.len())];
            let from = place(from, source.len());
            let piece = &source[from..(from + len).min(source.len())];
            let at = place(at, bytes.len() + 1);
            let end = (at + piece.len()).min(bytes.len());
            bytes.splice(at..end, piece.iter().copied());
        }
        Mutation::Repeat { from, len, times } => {
            let from = place(from, bytes.len());
            let piece = bytes[from..(from + len).min(bytes.len())].to_vec();
            let end = from + piece.len();
            bytes.splice(end..end, piece.repeat(*times));
        }
        Mutation::Length(at, length) if bytes.len() >= 4 => {
            let candidates = length_like(bytes);
            let at = match candidates.is_empty() {
                true => place(at, bytes.len() - 3),
                false => candidates[at.index(candidates.len())],
            };
            let old = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
            let new = match length {
                Length::Set(value) => *value,
                Length::Add(delta) => old.wrapping_add_signed(i32::from(*delta)),
            };
            bytes[at..at + 4].copy_from_slice(&new.to_be_bytes());
        }
        _ => {}
    }
}

/// One of `seeds` with one to eight mutations applied.
pub fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let count = seeds.len();
    (0..count, prop::collection::vec(mutation(), 1..8)).prop_map(move |(seed, mutations)| {
        let mut bytes = seeds[seed].clone();
        for mutation in &mutations {
            apply(&mut bytes, &seeds, mutation);
        }
        bytes
    })
}

/// Mutated seeds most of the time, random bytes now and then.
pub fn hostile_bytes(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => mutated(seeds),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

// ------------------------------------------------------------------------------------------
// JSON

/// What a JSON value is replaced with: the ends of numbers, wrong types, texts of extreme
/// shapes, deep and long arrays.
pub fn json_value() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        Just(String::new()),
        Just("\u{0}".to_owned()),
        Just("\u{202e}JP".to_owned()),
        Just("🦀".repeat(300)),
        Just("x".repeat(70_000)),
        Just("0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6A".to_owned()),
        Just("{0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a}".to_owned()),
        Just("00000000-0000-0000-0000-000000000000".to_owned()),
        Just("+2025-12-11".to_owned()),
        Just("2025-02-29".to_owned()),
        Just("262143-12-31".to_owned()),
        Just("2025-12-31T23:59:60Z".to_owned()),
        Just("+262142-12-31T23:59:59Z".to_owned()),
        Just("0000-01-01T00:00:00Z".to_owned()),
        Just("9999-12-31T23:59:59.999999999-23:59".to_owned()),
        "[A-Za-z0-9 _-]{0,12}",
        "\\PC{0,24}",
    ];
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop::sample::select(vec![0i64, -1, i64::MIN, i64::MAX, 10_000, 10_001, 4_294_967_296]).prop_map(Value::from),
        prop::sample::select(vec![u64::MAX, (1 << 53) + 1]).prop_map(Value::from),
        prop::sample::select(vec![0.5, -0.0, 1e308, 2500.0]).prop_map(Value::from),
        prop::sample::select(vec!["JP", "", "member", "guest", "2025-12-11"]).prop_map(Value::from),
    ];
    prop_oneof![
        4 => scalar.clone(),
        4 => text.prop_map(Value::from),
        1 => (0..200usize).prop_map(|depth| (0..depth).fold(Value::Null, |inner, _| Value::Array(vec![inner]))),
        1 => (scalar.clone(), 0..5000usize).prop_map(|(item, len)| Value::Array(vec![item; len])),
        1 => prop::collection::btree_map("[a-z_]{0,12}", scalar, 0..4)
            .prop_map(|map| Value::Object(map.into_iter().collect())),
    ]
}

/// One change to a JSON value, at a node chosen among all of its nodes.
#[derive(Clone, Debug)]
pub enum JsonMutation {
    Replace(Index, Value),
    /// Removes the node from its object or array.
    Remove(Index),
    /// Adds a key to the node, if it is an object.
    AddKey(Index, String, Value),
}

pub fn json_mutation() -> impl Strategy<Value = JsonMutation> {
    let key = prop_oneof![
        prop::sample::select(vec!["type", "data", "event_id", "stream", "labels", "position", "checkpoint", "format"])
            .prop_map(str::to_owned),
        "[a-z_]{0,10}",
    ];
    prop_oneof![
        4 => (any::<Index>(), json_value()).prop_map(|(at, value)| JsonMutation::Replace(at, value)),
        1 => any::<Index>().prop_map(JsonMutation::Remove),
        1 => (any::<Index>(), key, json_value()).prop_map(|(at, key, value)| JsonMutation::AddKey(at, key, value)),
    ]
}

/// The JSON pointers of every node of `value`, the root first.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            out.push(at.clone());
            for (key, child) in map {
                pointers(child, format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(items) => {
            out.push(at.clone());
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => out.push(at),
    }
}

/// Applies `mutation` to `value`.
pub fn apply_json(value: &mut Value, mutation: &JsonMutation) {
    let mut all = Vec::new();
    pointers(value, String::new(), &mut all);
    let (JsonMutation::Replace(at, _) | JsonMutation::Remove(at) | JsonMutation::AddKey(at, ..)) = mutation;
    let pointer = &all[at.index(all.len())];
    match mutation {
        JsonMutation::Replace(_, new) => *value.pointer_mut(pointer).expect("a node's pointer") = new.clone(),
        JsonMutation::Remove(_) => {
            let Some((parent, last)) = pointer.rsplit_once('/') else { return };
            let last = last.replace("~1", "/").replace("~0", "~");
            match value.pointer_mut(parent).expect("a node's parent") {
                Value::Object(map) => drop(map.remove(&last)),
                Value::Array(items) => drop(items.remove(last.parse::<usize>().expect("an index"))),
                _ => {}
            }
        }
        JsonMutation::AddKey(_, key, new) => {
            if let Value::Object(map) = value.pointer_mut(pointer).expect("a node's pointer") {
                map.insert(key.clone(), new.clone());
            }
        }
    }
}

/// One of the JSON `seeds` with one to four value mutations applied, written back as one line.
pub fn json_mutated(seeds: Vec<Value>) -> impl Strategy<Value = String> {
    let count = seeds.len();
    (0..count, prop::collection::vec(json_mutation(), 1..4)).prop_map(move |(seed, mutations)| {
        let mut value = seeds[seed].clone();
        for mutation in &mutations {
            apply_json(&mut value, mutation);
        }
        value.to_string()
    })
}
