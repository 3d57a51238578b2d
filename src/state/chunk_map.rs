//! A sorted map whose entries sit in chunks shared by reference, so that a copy of it costs
//! one pointer per chunk instead of one copy per entry. A snapshot copies the whole state
//! between two applies while writers wait for their acks; with the per-write index and the
//! dedup window in these maps, that copy stays in microseconds however many writes the WAL
//! holds. A chunk is copied only when it is first changed after a copy, which for a map
//! that grows at its end (LSNs, a producer's seqs) is the last chunk alone.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Entries per chunk once a chunk splits (a chunk holds up to twice as many).
const CHUNK: usize = 512;

type Chunk<K, V> = Arc<VecDeque<(K, V)>>;

/// A sorted map with cheap copies. Every chunk is non-empty, its keys ascend, and the chunks
/// follow each other in key order.
#[derive(Clone)]
pub struct ChunkMap<K, V> {
    chunks: Vec<Chunk<K, V>>,
    len: usize,
}

impl<K, V> Default for ChunkMap<K, V> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

/// A place in the map: chunk index and offset in it.
type Place = (usize, usize);

impl<K: Ord + Clone, V: Clone> ChunkMap<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        let (c, o) = self.place_of_first(|k| k < key);
        let (k, v) = self.chunks.get(c)?.get(o)?;
        (k == key).then_some(v)
    }

    /// Inserts `value` at `key`; returns the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if self.chunks.is_empty() {
            self.chunks.push(Arc::new(VecDeque::from([(key, value)])));
            self.len = 1;
            return None;
        }
        // The chunk that would hold `key`; past the last key, the last chunk.
        let last = self.chunks.len() - 1;
        let c = self
            .chunks
            .partition_point(|ch| last_key(ch) < &key)
            .min(last);
        let chunk = Arc::make_mut(&mut self.chunks[c]);
        match chunk.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(at) => return Some(std::mem::replace(&mut chunk[at].1, value)),
            Err(at) => chunk.insert(at, (key, value)),
        }
        self.len += 1;
        if chunk.len() >= 2 * CHUNK {
            let right = chunk.split_off(CHUNK);
            self.chunks.insert(c + 1, Arc::new(right));
        }
        None
    }

    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        self.chunks.first()?.front().map(|(k, v)| (k, v))
    }

    pub fn pop_first(&mut self) -> Option<(K, V)> {
        let first = Arc::make_mut(self.chunks.first_mut()?);
        let popped = first.pop_front();
        if first.is_empty() {
            self.chunks.remove(0);
        }
        self.len -= usize::from(popped.is_some());
        popped
    }

    /// Keeps only the entries at `floor` and above.
    pub fn retain_from(&mut self, floor: &K) {
        let whole = self.chunks.partition_point(|ch| last_key(ch) < floor);
        for gone in self.chunks.drain(..whole) {
            self.len -= gone.len();
        }
        let Some(first) = self.chunks.first_mut() else {
            return;
        };
        let below = first.partition_point(|(k, _)| k < floor);
        if below > 0 {
            Arc::make_mut(first).drain(..below);
            self.len -= below;
        }
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + '_ {
        self.range::<std::ops::RangeFull, K>(..)
    }

    /// The entries with keys in `range`, in key order.
    pub fn range<R, Q>(&self, range: R) -> impl DoubleEndedIterator<Item = (&K, &V)> + '_
    where
        R: RangeBounds<Q>,
        K: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let start = match range.start_bound() {
            Bound::Included(s) => self.place_of_first(|k| k.borrow() < s),
            Bound::Excluded(s) => self.place_of_first(|k| k.borrow() <= s),
            Bound::Unbounded => (0, 0),
        };
        let end = match range.end_bound() {
            Bound::Included(e) => self.place_of_first(|k| k.borrow() <= e),
            Bound::Excluded(e) => self.place_of_first(|k| k.borrow() < e),
            Bound::Unbounded => (self.chunks.len(), 0),
        };
        let chunks = if start < end {
            start.0..end.0.min(self.chunks.len().saturating_sub(1)) + 1
        } else {
            0..0
        };
        chunks.flat_map(move |c| {
            let chunk = &self.chunks[c];
            let from = if c == start.0 { start.1 } else { 0 };
            let to = if c == end.0 { end.1 } else { chunk.len() };
            chunk.range(from..to).map(|(k, v)| (k, v))
        })
    }

    /// The place of the first entry whose key is not `before` (`before` holds for a prefix
    /// of the keys); one past the end when it holds for all.
    fn place_of_first(&self, before: impl Fn(&K) -> bool) -> Place {
        let c = self.chunks.partition_point(|ch| before(last_key(ch)));
        match self.chunks.get(c) {
            Some(chunk) => (c, chunk.partition_point(|(k, _)| before(k))),
            None => (self.chunks.len(), 0),
        }
    }
}

fn last_key<K, V>(chunk: &VecDeque<(K, V)>) -> &K {
    // Chunks are never empty: `pop_first` and `retain_from` drop a chunk they empty.
    &chunk.back().expect("a chunk is never empty").0
}

impl<K: Ord + Clone, V: Clone> FromIterator<(K, V)> for ChunkMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Self::default();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<K: Ord + Clone + PartialEq, V: Clone + PartialEq> PartialEq for ChunkMap<K, V> {
    /// Equal entries, however they are chunked.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<K: Ord + Clone + Eq, V: Clone + Eq> Eq for ChunkMap<K, V> {}

impl<K: Ord + Clone + fmt::Debug, V: Clone + fmt::Debug> fmt::Debug for ChunkMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Serialized as a map, as a `BTreeMap` is: postcard writes the same bytes for it as for a
/// sequence of `(key, value)` pairs, so snapshot files keep their format.
impl<K: Ord + Clone + Serialize, V: Clone + Serialize> Serialize for ChunkMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, K, V> Deserialize<'de> for ChunkMap<K, V>
where
    K: Ord + Clone + Deserialize<'de>,
    V: Clone + Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

struct MapVisitor<K, V>(PhantomData<(K, V)>);

impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
where
    K: Ord + Clone + Deserialize<'de>,
    V: Clone + Deserialize<'de>,
{
    type Value = ChunkMap<K, V>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = ChunkMap::default();
        let mut previous: Option<K> = None;
        while let Some((k, v)) = access.next_entry::<K, V>()? {
            // Written in key order; anything else is a damaged file, not a map to sort.
            if previous
                .as_ref()
                .is_some_and(|p| p.cmp(&k) != Ordering::Less)
            {
                return Err(serde::de::Error::custom("map keys out of order"));
            }
            previous = Some(k.clone());
            map.insert(k, v);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A small deterministic generator (xorshift), so a failure replays.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn assert_same(map: &ChunkMap<u64, u64>, model: &BTreeMap<u64, u64>) {
        assert_eq!(map.len(), model.len());
        assert!(map.iter().eq(model.iter()), "entries differ");
        assert!(map.iter().rev().eq(model.iter().rev()), "reversed differ");
        assert_eq!(map.first_key_value(), model.first_key_value());
    }

    #[test]
    fn behaves_as_a_btree_map_under_random_operations() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut map = ChunkMap::default();
        let mut model = BTreeMap::new();
        let mut copies = Vec::new();
        for step in 0..20_000u64 {
            match rng.below(100) {
                // Mostly appends, as LSNs and seqs grow, with some inserts anywhere.
                0..=59 => {
                    let key = model
                        .last_key_value()
                        .map_or(0, |(k, _)| k + 1 + rng.below(3));
                    assert_eq!(map.insert(key, step), model.insert(key, step));
                }
                60..=79 => {
                    let key = rng.below(30_000);
                    assert_eq!(map.insert(key, step), model.insert(key, step));
                }
                80..=84 => assert_eq!(map.pop_first(), model.pop_first()),
                85..=86 => {
                    let floor = rng.below(30_000);
                    map.retain_from(&floor);
                    model = model.split_off(&floor);
                }
                87..=89 if copies.len() < 40 => copies.push((map.clone(), model.clone())),
                _ => {
                    let (a, b) = (rng.below(30_000), rng.below(30_000));
                    let (a, b) = (a.min(b), a.max(b));
                    assert!(map.range(a..=b).eq(model.range(a..=b)));
                    assert!(map.range(a..b).eq(model.range(a..b)));
                    assert!(map.range(a..).eq(model.range(a..)));
                    assert!(map.range(..b).rev().eq(model.range(..b).rev()));
                    assert_eq!(map.get(&a), model.get(&a));
                }
            }
        }
        assert_same(&map, &model);
        // Changing the map after a copy left every copy as it was.
        for (copy, model_then) in &copies {
            assert_same(copy, model_then);
        }
    }

    #[test]
    fn an_empty_or_inverted_range_is_empty() {
        let map: ChunkMap<u64, u64> = (0..2000).map(|k| (k * 2, k)).collect();
        let (from, to) = (10, 5);
        assert_eq!(map.range(from..=to).count(), 0);
        assert_eq!(map.range(5000..).count(), 0);
        assert_eq!(map.range(..0).count(), 0);
        assert_eq!(map.range(3..=3).count(), 0);
        assert_eq!(map.range(4..=4).count(), 1);
    }

    #[test]
    fn a_copy_shares_its_chunks() {
        let map: ChunkMap<u64, u64> = (0..100_000).map(|k| (k, k)).collect();
        let copy = map.clone();
        assert!(Arc::ptr_eq(&map.chunks[0], &copy.chunks[0]));
        assert!(map.chunks.len() >= 100_000 / (2 * CHUNK));
    }

    #[test]
    fn serializes_as_a_btree_map_does() {
        let model: BTreeMap<u64, u64> = (0..3000).map(|k| (k * 3, k)).collect();
        let map: ChunkMap<u64, u64> = model.clone().into_iter().collect();
        let bytes = postcard::to_allocvec(&map).expect("encode");
        assert_eq!(bytes, postcard::to_allocvec(&model).expect("encode"));
        let pairs: Vec<(u64, u64)> = model.into_iter().collect();
        assert_eq!(bytes, postcard::to_allocvec(&pairs).expect("encode"));
        let back: ChunkMap<u64, u64> = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, map);
    }

    #[test]
    fn refuses_keys_out_of_order() {
        let bytes = postcard::to_allocvec(&vec![(5u64, 1u64), (3, 2)]).expect("encode");
        assert!(postcard::from_bytes::<ChunkMap<u64, u64>>(&bytes).is_err());
    }
}
