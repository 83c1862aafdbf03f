//! A bounded table of per-source state with O(1) lookup, insert, eviction of the oldest and
//! expiry: partial knocks of sequence doors, reassembly buffers of encoded doors, and the rate
//! limiter's token buckets of SPA doors.
//!
//! Entries live in a slab (`Vec`) threaded by an intrusive doubly linked list in the order they
//! were started, so the head is always the oldest entry: it is the one evicted when the table is
//! full, and the one whose deadline `poll_timeout` reports.
//!
//! The index is an open-addressing array of buckets (linear probing, at most half full, deletion
//! by backward shift so there are no tombstones). A bucket is 6 bytes: the entry's slab position,
//! 8 more bits of its fingerprint (a tag) and its distance from its home bucket, so that probing
//! and the backward shift read the index alone and touch a slot only on a tag match (an entry
//! of the key, or 1 in 256 others): under a flood of new sources each one costs one miss in the
//! index instead of one per entry probed past. A key is not kept:
//! it is replaced by its **fingerprint**, a 64-bit keyed SipHash of the whole key under a random
//! 128-bit key drawn per table (std's `RandomState`), kept in the entry's slot. The fingerprint's
//! low bits choose the bucket, so an attacker who cannot learn the hash key cannot aim probe
//! clusters at anyone. A lookup accepts a slot only when its fingerprint is equal **and** the
//! entry says it is for the key ([`Entry::is_for`], which compares what the entry keeps of the
//! key: source and door). So two keys can only be taken for one another when they have the same
//! source and door, differ only in what the entry does not keep (a partial knock's candidate
//! tag), and their fingerprints collide: odds of 2^-64 for a given pair of keys, at most
//! 64 x 63 / 2 = 2 016 pairs per (source, door) since a door offers at most 64 candidates at
//! once, so about 1 in 10^16 per (source, door); and the source could only confuse its own two
//! attempts at its own door, never anyone else's progress. SECURITY.md states the same odds.

use std::hash::{BuildHasher, Hash, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

const NIL: u32 = u32::MAX;
/// The fewest index buckets, before the first growth.
const MIN_BUCKETS: usize = 16;
/// A bucket's distance at or beyond which the real one is computed from the slot's fingerprint
/// (only in clusters of 255 or more, which a keyed hash at most half full all but never makes).
const FAR: u8 = u8::MAX;

/// One bucket of the index, 6 bytes: a slab position (`NIL` when empty), a tag (the fingerprint's
/// top 8 bits, which the home bucket never uses) and the distance from the home bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    lo: u16,
    hi: u16,
    /// The tag in the high byte, the distance (saturated at `FAR`) in the low byte.
    meta: u16,
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        lo: u16::MAX,
        hi: u16::MAX,
        meta: 0,
    };

    fn new(slot: u32, fp: u64, dist: usize) -> Bucket {
        let dist = u8::try_from(dist).unwrap_or(FAR);
        Bucket {
            lo: slot as u16,
            hi: (slot >> 16) as u16,
            meta: u16::from(tag(fp)) << 8 | u16::from(dist),
        }
    }

    fn slot(self) -> u32 {
        u32::from(self.hi) << 16 | u32::from(self.lo)
    }

    fn is_empty(self) -> bool {
        self.slot() == NIL
    }

    fn tag(self) -> u8 {
        (self.meta >> 8) as u8
    }

    fn dist(self) -> u8 {
        self.meta as u8
    }
}

/// The fingerprint's bits a bucket keeps: the top byte (the home bucket is from the low bits,
/// at most 31 of them).
fn tag(fp: u64) -> u8 {
    (fp >> 56) as u8
}

/// Which source is knocking on which door, for which candidate sequence (its tag).
pub(crate) type Key = (IpAddr, u16, u64);

/// What an entry keeps of its key, so that a lookup can check that a slot whose fingerprint
/// matches is really for the key looked up.
pub(crate) trait Entry<K> {
    fn is_for(&self, key: &K) -> bool;
}

/// A source address in 16 bytes: IPv4 as its IPv4-mapped IPv6 address. Lossless for the
/// canonical addresses the engine keys by (an IPv4-mapped source is its IPv4 address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Src([u8; 16]);

impl Src {
    pub fn new(ip: IpAddr) -> Src {
        Src(match ip.to_canonical() {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        })
    }

    pub fn ip(self) -> IpAddr {
        Ipv6Addr::from(self.0).to_canonical()
    }
}

/// Instants as signed nanoseconds from an engine's epoch (the first instant it was told), so a
/// deadline takes 8 bytes instead of an `Instant`'s 16. Exact to the nanosecond, as `Instant`
/// is on Linux, for 292 years either side of the epoch: no wrap-around in any lifetime of a
/// daemon (doors' windows are at most an hour), and instants before the epoch are negative.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Epoch(Option<Instant>);

pub(crate) type Ticks = i64;

impl Epoch {
    /// `now` in ticks; the first call fixes the epoch.
    pub fn ticks(&mut self, now: Instant) -> Ticks {
        let epoch = *self.0.get_or_insert(now);
        let nanos = |d: Duration| Ticks::try_from(d.as_nanos()).unwrap_or(Ticks::MAX);
        match now.checked_duration_since(epoch) {
            Some(after) => nanos(after),
            None => -nanos(epoch.duration_since(now)),
        }
    }

    /// `now + d` in ticks, `None` when that is beyond 292 years (only a hand-built door's
    /// window could ask for it).
    pub fn ticks_after(&mut self, now: Instant, d: Duration) -> Option<Ticks> {
        let d = Ticks::try_from(d.as_nanos()).ok()?;
        self.ticks(now).checked_add(d)
    }

    /// The instant of `t`; `None` before any instant was told or if the platform cannot
    /// represent it.
    pub fn instant(&self, t: Ticks) -> Option<Instant> {
        let epoch = self.0?;
        let d = Duration::from_nanos(t.unsigned_abs());
        if t >= 0 {
            epoch.checked_add(d)
        } else {
            epoch.checked_sub(d)
        }
    }
}

/// A source's progress through one candidate sequence of a door: 32 bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Progress {
    /// When this progress is forgotten: the first knock + the door's window.
    pub deadline: Ticks,
    /// The source, for the report of a failed attempt once the window ran out.
    pub src: Src,
    /// The door's index.
    pub door: u16,
    /// Knocks matched so far (at least 1 while the entry exists).
    pub matched: u8,
    /// The length of the sequence, for the report of a failed attempt.
    pub of: u8,
    /// The flags of a knock on the expected next port that failed the door's filter, if one
    /// came since the last match: the reason the attempt fails, if it does.
    pub bad_flags: Option<crate::types::TcpFlags>,
    /// Set when the source opened a door: this progress is then no attempt of its own, and its
    /// end is not reported.
    pub quiet: bool,
}

impl Progress {
    /// The first knock of `key`'s source at a sequence of `of` knocks.
    pub fn first(key: &Key, deadline: Ticks, of: usize) -> Progress {
        Progress {
            deadline,
            src: Src::new(key.0),
            door: key.1,
            matched: 1,
            of: u8::try_from(of).unwrap_or(u8::MAX),
            bad_flags: None,
            quiet: false,
        }
    }
}

impl Entry<Key> for Progress {
    /// The candidate tag is not kept: the fingerprint stands for it (see the module's doc).
    fn is_for(&self, key: &Key) -> bool {
        self.door == key.1 && self.src == Src::new(key.0)
    }
}

/// A key's fingerprint, from [`Table::fingerprint`] of the same table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fp(u64);

#[derive(Debug)]
struct Slot<V> {
    /// The fingerprint of the entry's key.
    fp: u64,
    /// `None` only while the slot is on the free list.
    value: Option<V>,
    /// Previous in age order; unused on the free list.
    prev: u32,
    /// Next in age order; on the free list, the next free slot.
    next: u32,
}

#[derive(Debug)]
pub(crate) struct Table<K = Key, V = Progress, S = RandomState> {
    /// The fingerprints' keyed hash: `RandomState` outside tests.
    hasher: S,
    /// The length is a power of two (or zero before the first insert), at least twice the
    /// number of entries.
    index: Vec<Bucket>,
    slots: Vec<Slot<V>>,
    len: usize,
    /// Head of the free list, threaded through `Slot::next`.
    free: u32,
    head: u32,
    tail: u32,
    capacity: usize,
    _key: std::marker::PhantomData<fn(&K)>,
}

impl<K: Hash, V: Entry<K>> Table<K, V> {
    pub fn new(capacity: usize) -> Self {
        Table::with_hasher(capacity, RandomState::new())
    }
}

impl<K: Hash, V: Entry<K>, S: BuildHasher> Table<K, V, S> {
    fn with_hasher(capacity: usize, hasher: S) -> Self {
        // The slab index is a u32 with one value reserved for "none", and the index must be able
        // to hold twice that many buckets.
        let capacity = capacity.clamp(1, 1 << 30);
        Table {
            hasher,
            index: Vec::new(),
            slots: Vec::new(),
            len: 0,
            free: NIL,
            head: NIL,
            tail: NIL,
            capacity,
            _key: std::marker::PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The fingerprint of `key`, for the `_fp` methods: one hash per key however many
    /// lookups and inserts use it.
    pub fn fingerprint(&self, key: &K) -> Fp {
        Fp(self.hasher.hash_one(key))
    }

    fn mask(&self) -> usize {
        self.index.len().wrapping_sub(1)
    }

    /// The bucket and slot of `key`, whose fingerprint is `fp`, if present.
    fn find(&self, Fp(fp): Fp, key: &K) -> Option<(usize, u32)> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut b = fp as usize & mask;
        let t = tag(fp);
        // at most half full, so an empty bucket always ends the probe
        loop {
            let bucket = self.index[b];
            if bucket.is_empty() {
                return None;
            }
            if bucket.tag() == t {
                let i = bucket.slot();
                let s = &self.slots[i as usize];
                if s.fp == fp && s.value.as_ref().is_some_and(|v| v.is_for(key)) {
                    return Some((b, i));
                }
            }
            b = (b + 1) & mask;
        }
    }

    /// The bucket holding slot `i`, whose fingerprint is `fp`.
    fn bucket_of(&self, fp: u64, i: u32) -> usize {
        let mask = self.mask();
        let mut b = fp as usize & mask;
        while self.index[b].slot() != i {
            b = (b + 1) & mask;
        }
        b
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.get_fp(self.fingerprint(key), key)
    }

    pub fn get_fp(&self, fp: Fp, key: &K) -> Option<&V> {
        let (_, i) = self.find(fp, key)?;
        self.slots[i as usize].value.as_ref()
    }

    /// Changes a value in place, keeping its place in the age order.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.get_mut_fp(self.fingerprint(key), key)
    }

    pub fn get_mut_fp(&mut self, fp: Fp, key: &K) -> Option<&mut V> {
        let (_, i) = self.find(fp, key)?;
        self.slots[i as usize].value.as_mut()
    }

    /// Reads the index bucket a lookup of `fp` starts at, so that its cache miss overlaps
    /// others' (a prefetch without `unsafe`: a load nothing waits for).
    pub fn touch(&self, Fp(fp): Fp) {
        if !self.index.is_empty() {
            std::hint::black_box(self.index[fp as usize & self.mask()]);
        }
    }

    /// [`Table::touch`] of each fingerprint.
    pub fn touch_all<'a>(&self, fps: impl Iterator<Item = &'a Fp>) {
        if self.index.is_empty() {
            return;
        }
        let mask = self.mask();
        for &Fp(fp) in fps {
            std::hint::black_box(self.index[fp as usize & mask]);
        }
    }

    /// Reads the index buckets of the entries the next `inserts` new keys would evict (the
    /// oldest, when the table would overflow), as [`Table::touch`] does.
    pub fn touch_oldest(&self, inserts: usize) {
        let evictions = (self.len + inserts)
            .saturating_sub(self.capacity)
            .min(inserts);
        let mut i = self.head;
        for _ in 0..evictions {
            if i == NIL {
                break;
            }
            let s = &self.slots[i as usize];
            self.touch(Fp(s.fp));
            i = s.next;
        }
    }

    /// Inserts or replaces `key` as the newest entry; `value` must be for `key`. Returns the
    /// entry evicted to make room.
    pub fn insert_newest(&mut self, key: K, value: V) -> Option<V> {
        self.insert_newest_fp(self.fingerprint(&key), key, value)
    }

    /// [`Table::insert_newest`] with the key's fingerprint already computed.
    pub fn insert_newest_fp(&mut self, fp: Fp, key: K, value: V) -> Option<V> {
        debug_assert!(value.is_for(&key), "an entry must be for its key");
        debug_assert!(fp == self.fingerprint(&key), "the fingerprint of the key");
        if let Some((_, i)) = self.find(fp, &key) {
            self.unlink(i);
            self.slots[i as usize].value = Some(value);
            self.link_tail(i);
            return None;
        }
        let evicted = if self.len >= self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        self.grow_index();
        let Fp(fp) = fp;
        let slot = Slot {
            fp,
            value: Some(value),
            prev: NIL,
            next: NIL,
        };
        let i = if self.free != NIL {
            let i = self.free;
            self.free = self.slots[i as usize].next;
            self.slots[i as usize] = slot;
            i
        } else {
            if self.slots.len() == self.slots.capacity() {
                // double, but never beyond the bound: no spare capacity past max_tracked
                let more = self.slots.len().max(MIN_BUCKETS);
                let more = more.min(self.capacity - self.slots.len()).max(1);
                self.slots.reserve_exact(more);
            }
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        };
        self.place(fp, i);
        self.len += 1;
        self.link_tail(i);
        evicted
    }

    /// Puts slot `i` in the first empty bucket of its probe sequence.
    fn place(&mut self, fp: u64, i: u32) {
        let mask = self.mask();
        let home = fp as usize & mask;
        let mut b = home;
        while !self.index[b].is_empty() {
            b = (b + 1) & mask;
        }
        self.index[b] = Bucket::new(i, fp, b.wrapping_sub(home) & mask);
    }

    /// Doubles the index before an insert would make it more than half full. The most buckets
    /// are the power of two at or above twice the capacity.
    fn grow_index(&mut self) {
        if (self.len + 1) * 2 <= self.index.len() {
            return;
        }
        let buckets = ((self.len + 1) * 2).next_power_of_two().max(MIN_BUCKETS);
        let old = std::mem::replace(&mut self.index, vec![Bucket::EMPTY; buckets]);
        for i in old.into_iter().filter(|b| !b.is_empty()).map(Bucket::slot) {
            let fp = self.slots[i as usize].fp;
            self.place(fp, i);
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.remove_fp(self.fingerprint(key), key)
    }

    pub fn remove_fp(&mut self, fp: Fp, key: &K) -> Option<V> {
        let (b, i) = self.find(fp, key)?;
        self.remove_at(b, i)
    }

    fn remove_at(&mut self, b: usize, i: u32) -> Option<V> {
        self.unindex(b);
        self.unlink(i);
        self.len -= 1;
        let s = &mut self.slots[i as usize];
        s.next = self.free;
        self.free = i;
        // a slot in the index always holds a value
        s.value.take()
    }

    /// Empties bucket `b`, shifting back the entries after it that probed past it, so that every
    /// entry stays reachable from its home bucket without tombstones. Reads the buckets' own
    /// distances, and a slot only for a distance of `FAR` or more.
    fn unindex(&mut self, mut b: usize) {
        let mask = self.mask();
        let mut next = (b + 1) & mask;
        loop {
            let bucket = self.index[next];
            if bucket.is_empty() {
                break;
            }
            let fp = || self.slots[bucket.slot() as usize].fp;
            let dist = match bucket.dist() {
                FAR => next.wrapping_sub(fp() as usize) & mask,
                d => usize::from(d),
            };
            let gap = next.wrapping_sub(b) & mask;
            // the entry at `next` may move to `b` when its home is not within (b, next]
            if dist >= gap {
                let moved = if bucket.dist() == FAR {
                    Bucket::new(bucket.slot(), fp(), dist - gap)
                } else {
                    Bucket {
                        meta: bucket.meta - gap as u16,
                        ..bucket
                    }
                };
                self.index[b] = moved;
                b = next;
            }
            next = (next + 1) & mask;
        }
        self.index[b] = Bucket::EMPTY;
    }

    pub fn oldest(&self) -> Option<&V> {
        if self.head == NIL {
            return None;
        }
        self.slots[self.head as usize].value.as_ref()
    }

    pub fn pop_oldest(&mut self) -> Option<V> {
        if self.head == NIL {
            return None;
        }
        let i = self.head;
        let b = self.bucket_of(self.slots[i as usize].fp, i);
        self.remove_at(b, i)
    }

    /// Bytes held per entry: its slot in the slab, and the index's buckets at the most they
    /// can be per entry at 1 000 000 entries (2^21 buckets of 6 bytes, 12.6 bytes an entry).
    /// Just after the index doubled it is up to twice that; BENCHMARKS.md has the measured
    /// figure.
    pub fn bytes_per_entry() -> usize {
        let per_bucket = std::mem::size_of::<Bucket>();
        std::mem::size_of::<Slot<V>>() + (per_bucket * (1 << 21)).div_ceil(1_000_000)
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        let s = &mut self.slots[i as usize];
        s.prev = NIL;
        s.next = NIL;
    }

    fn link_tail(&mut self, i: u32) {
        self.slots[i as usize].prev = self.tail;
        self.slots[i as usize].next = NIL;
        if self.tail == NIL {
            self.head = i;
        } else {
            self.slots[self.tail as usize].next = i;
        }
        self.tail = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    fn key(n: u32) -> Key {
        (IpAddr::V4(Ipv4Addr::from(n)), 0, 0)
    }

    fn p(k: &Key, deadline: Ticks) -> Progress {
        Progress::first(k, deadline, 3)
    }

    fn oldest_src(t: &Table) -> Option<IpAddr> {
        t.oldest().map(|p| p.src.ip())
    }

    #[test]
    fn entries_fit_the_budget() {
        // 64 bytes per tracked source measured is the target (BENCHMARKS.md): the slot is
        // 48 of them, the index about 12.6 at 1 000 000 sources.
        assert_eq!(std::mem::size_of::<Progress>(), 32);
        assert_eq!(std::mem::size_of::<Slot<Progress>>(), 48);
        assert_eq!(std::mem::size_of::<Bucket>(), 6);
        assert_eq!(Table::<Key, Progress>::bytes_per_entry(), 61);
    }

    #[test]
    fn evicts_oldest_and_reuses_slots() {
        let mut t: Table = Table::new(3);
        for n in 0..3 {
            assert!(t.insert_newest(key(n), p(&key(n), 10)).is_none());
        }
        // re-inserting key 0 makes it the newest, so key 1 is now the oldest
        assert!(t.insert_newest(key(0), p(&key(0), 15)).is_none());
        let evicted = t.insert_newest(key(9), p(&key(9), 16));
        assert_eq!(evicted.map(|p| p.src.ip()), Some(key(1).0));
        assert_eq!(t.len(), 3);
        assert_eq!(oldest_src(&t), Some(key(2).0));
        assert!(t.remove(&key(0)).is_some());
        assert!(t.remove(&key(0)).is_none());
        assert!(t.insert_newest(key(10), p(&key(10), 17)).is_none());
        assert_eq!(t.slots.len(), 3, "the freed slot is reused");
        for n in [2, 9, 10] {
            assert_eq!(t.pop_oldest().map(|p| p.src.ip()), Some(key(n).0));
        }
        assert!(t.pop_oldest().is_none());
        assert_eq!(t.len(), 0);
        assert!(
            t.index.iter().all(|b| b.is_empty()),
            "the index is empty again"
        );
    }

    /// Every key gets the same fingerprint: all entries collide, in one probe cluster.
    #[derive(Clone, Copy, Default)]
    struct Collide;
    impl std::hash::Hasher for Collide {
        fn finish(&self) -> u64 {
            0x5eed
        }
        fn write(&mut self, _: &[u8]) {}
    }
    impl BuildHasher for Collide {
        type Hasher = Collide;
        fn build_hasher(&self) -> Collide {
            Collide
        }
    }

    #[test]
    fn equal_fingerprints_are_told_apart_by_source_and_door() {
        let mut t: Table<Key, Progress, Collide> = Table::with_hasher(8, Collide);
        let (a, b, c) = (key(1), key(2), (key(1).0, 1, 0));
        for (k, d) in [(a, 5), (b, 6), (c, 7)] {
            assert!(t.insert_newest(k, p(&k, d)).is_none());
        }
        assert_eq!(t.get(&a).map(|p| p.deadline), Some(5));
        assert_eq!(t.get(&b).map(|p| p.deadline), Some(6), "other source");
        assert_eq!(t.get(&c).map(|p| p.deadline), Some(7), "other door");
        assert_eq!(t.remove(&a).map(|p| p.deadline), Some(5));
        assert!(t.get(&a).is_none());
        assert_eq!(
            t.get(&b).map(|p| p.deadline),
            Some(6),
            "still found past the hole"
        );
        assert_eq!(t.get(&c).map(|p| p.deadline), Some(7));
        // as the module's doc says: a key that differs only in the tag, with a colliding
        // fingerprint, is taken for the entry (its own source's own attempt at its own door)
        let other_tag = (b.0, b.1, 9);
        assert_eq!(t.get(&other_tag).map(|p| p.deadline), Some(6));
        // with the keyed hash, another tag has another fingerprint
        let mut keyed: Table = Table::new(8);
        keyed.insert_newest(b, p(&b, 6));
        assert!(keyed.get(&other_tag).is_none());
        assert_eq!(keyed.get(&b).map(|p| p.deadline), Some(6));
    }

    /// Every fingerprint equal: the worst cluster, with removals from its middle, checked against
    /// a map; with `cap` past 255 the cluster holds distances a bucket cannot (`FAR`).
    /// Returns how many buckets ended up `FAR`.
    fn one_cluster_matches_a_map(cap: usize, keys: u64) -> usize {
        let mut t: Table<Key, Progress, Collide> = Table::with_hasher(cap, Collide);
        let mut model: HashMap<Key, Ticks> = HashMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..5_000i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (IpAddr::V4(Ipv4Addr::from((x % keys) as u32)), 0, 0);
            if x >> 62 == 0 {
                assert_eq!(t.remove(&k).map(|p| p.deadline), model.remove(&k));
            } else if model.len() < cap || model.contains_key(&k) {
                assert!(t.insert_newest(k, p(&k, step)).is_none());
                model.insert(k, step);
            }
            assert_eq!(t.len(), model.len());
        }
        for n in 0..keys as u32 {
            let k = key(n);
            assert_eq!(t.get(&k).map(|p| p.deadline), model.get(&k).copied());
        }
        // every bucket's distance is its real one, or FAR for 255 and more
        let mask = t.mask();
        for (b, bucket) in t.index.iter().enumerate().filter(|(_, b)| !b.is_empty()) {
            let fp = t.slots[bucket.slot() as usize].fp;
            let dist = b.wrapping_sub(fp as usize) & mask;
            assert_eq!(
                bucket.dist(),
                u8::try_from(dist).unwrap_or(FAR),
                "bucket {b}"
            );
            assert_eq!(bucket.tag(), tag(fp));
        }
        t.index.iter().filter(|b| b.dist() == FAR).count()
    }

    #[test]
    fn one_cluster_matches_a_map_with_near_buckets() {
        assert_eq!(one_cluster_matches_a_map(64, 90), 0);
    }

    #[test]
    fn one_cluster_matches_a_map_past_the_farthest_distance() {
        assert!(
            one_cluster_matches_a_map(400, 700) > 0,
            "the cluster went past 255"
        );
    }

    #[test]
    fn matches_a_map_through_growth_removal_and_eviction() {
        // a model check against HashMap over many collisions of the low bits (one cluster per
        // growth), removals from the middle of clusters and evictions at the bound
        let cap = 300;
        let mut t: Table = Table::new(cap);
        let mut model: HashMap<Key, Ticks> = HashMap::new();
        let mut order: std::collections::VecDeque<Key> = Default::default();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..20_000i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (
                IpAddr::V4(Ipv4Addr::from((x % 600) as u32)),
                (x >> 20) as u16 % 2,
                (x >> 30) % 3,
            );
            match x >> 60 {
                0..=9 => {
                    let evicted = t.insert_newest(k, p(&k, step));
                    order.retain(|o| *o != k);
                    if !model.contains_key(&k) && model.len() >= cap {
                        let o = order.pop_front().expect("full");
                        model.remove(&o);
                        let e = evicted.expect("evicts when full");
                        assert_eq!((e.src.ip(), e.door), (o.0, o.1));
                    } else {
                        assert!(evicted.is_none());
                    }
                    model.insert(k, step);
                    order.push_back(k);
                }
                10..=13 => {
                    assert_eq!(t.remove(&k).map(|p| p.deadline), model.remove(&k));
                    order.retain(|o| *o != k);
                }
                _ => {
                    let o = order.pop_front();
                    let got = t.pop_oldest().map(|p| p.deadline);
                    assert_eq!(got, o.and_then(|o| model.remove(&o)));
                }
            }
            assert_eq!(t.len(), model.len());
            assert_eq!(t.get(&k).map(|p| p.deadline), model.get(&k).copied());
            assert!(t.index.len() >= 2 * t.len(), "at most half full");
        }
        for (k, d) in &model {
            assert_eq!(t.get(k).map(|p| p.deadline), Some(*d));
        }
        assert!(t.slots.len() <= cap, "the slab never outgrows the bound");
    }

    #[test]
    fn expiry_goes_oldest_first() {
        let mut t: Table = Table::new(10);
        for (n, d) in [(1, 30), (2, 10), (3, 20)] {
            t.insert_newest(key(n), p(&key(n), d));
        }
        // the head is the oldest started, not the earliest deadline (the engine's poll_timeout
        // documents the lazy drop of later entries that expire earlier)
        let popped: Vec<Ticks> = std::iter::from_fn(|| t.pop_oldest())
            .map(|p| p.deadline)
            .collect();
        assert_eq!(popped, vec![30, 10, 20]);
    }

    #[test]
    fn sources_round_trip_compactly() {
        for s in [
            "10.1.2.3",
            "::ffff:10.1.2.3",
            "fd00::1",
            "::1",
            "0.0.0.0",
            "::",
        ] {
            let ip: IpAddr = s.parse().expect("ip");
            assert_eq!(Src::new(ip).ip(), ip.to_canonical(), "{s}");
        }
    }

    #[test]
    fn ticks_are_exact_both_sides_of_the_epoch_and_do_not_wrap() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut e = Epoch::default();
        assert_eq!(e.instant(0), None, "no epoch yet");
        assert_eq!(e.ticks(t0), 0);
        let later = t0 + Duration::from_nanos(1);
        assert_eq!(e.ticks(later), 1);
        assert_eq!(e.ticks(t0 - Duration::from_nanos(3)), -3);
        // far beyond a u32 of milliseconds (49.7 days): still ordered and exact
        let far = Duration::from_secs(200 * 86_400) + Duration::from_nanos(7);
        let t = e.ticks_after(t0, far).expect("fits");
        assert!(t > e.ticks(t0 + Duration::from_secs(199 * 86_400)));
        assert_eq!(e.instant(t), Some(t0 + far));
        assert_eq!(e.instant(-3), Some(t0 - Duration::from_nanos(3)));
        assert_eq!(e.ticks_after(t0, Duration::MAX), None);
        assert_eq!(
            e.ticks_after(t0, crate::MAX_WINDOW),
            Some(3_600_000_000_000),
            "the longest window"
        );
    }
}
