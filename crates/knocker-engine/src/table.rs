//! A bounded table of per-source state with O(1) lookup, insert, eviction of the oldest and
//! expiry: partial knocks of sequence doors, and reassembly buffers of encoded doors.
//!
//! Entries live in a slab (`Vec`) threaded by an intrusive doubly linked list in the order they
//! were started, so the head is always the oldest entry: it is the one evicted when the table is
//! full, and the one whose deadline `poll_timeout` reports. A `HashMap` with std's randomly keyed
//! SipHash maps a key to a slab index, so an attacker cannot aim collisions at it.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Instant;

const NIL: u32 = u32::MAX;

/// Which source is knocking on which door, for which candidate sequence (its tag).
pub(crate) type Key = (IpAddr, u16, u64);

/// A source's progress through one candidate sequence of a door.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Progress {
    /// Knocks matched so far (at least 1 while the entry exists).
    pub matched: u8,
    /// When this progress is forgotten: the first knock + the door's window.
    pub deadline: Instant,
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
    /// The first knock of an attempt at a sequence of `of` knocks.
    pub fn first(deadline: Instant, of: usize) -> Progress {
        Progress {
            matched: 1,
            deadline,
            of: u8::try_from(of).unwrap_or(u8::MAX),
            bad_flags: None,
            quiet: false,
        }
    }
}

#[derive(Debug)]
struct Slot<K, V> {
    key: K,
    /// `None` only while the slot is on the free list.
    value: Option<V>,
    prev: u32,
    next: u32,
}

#[derive(Debug)]
pub(crate) struct Table<K = Key, V = Progress> {
    index: HashMap<K, u32>,
    slots: Vec<Slot<K, V>>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    capacity: usize,
}

impl<K: Hash + Eq + Copy, V> Table<K, V> {
    pub fn new(capacity: usize) -> Self {
        // The slab index is a u32 with one value reserved for "none".
        let capacity = capacity.clamp(1, (NIL - 1) as usize);
        Table {
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.index
            .get(key)
            .and_then(|&i| self.slots[i as usize].value.as_ref())
    }

    /// Changes a value in place, keeping its place in the age order.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = *self.index.get(key)?;
        self.slots[i as usize].value.as_mut()
    }

    /// Inserts or replaces `key` as the newest entry. Returns the key evicted to make room.
    pub fn insert_newest(&mut self, key: K, value: V) -> Option<K> {
        if let Some(i) = self.index.get(&key).copied() {
            self.unlink(i);
            self.slots[i as usize].value = Some(value);
            self.link_tail(i);
            return None;
        }
        let evicted = if self.index.len() >= self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        let slot = Slot {
            key,
            value: Some(value),
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, i);
        self.link_tail(i);
        evicted
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.index.remove(key)?;
        self.unlink(i);
        self.free.push(i);
        self.slots[i as usize].value.take()
    }

    pub fn oldest(&self) -> Option<(K, &V)> {
        if self.head == NIL {
            return None;
        }
        let s = &self.slots[self.head as usize];
        s.value.as_ref().map(|v| (s.key, v))
    }

    pub fn pop_oldest(&mut self) -> Option<K> {
        let key = self.oldest()?.0;
        self.remove(&key);
        Some(key)
    }

    /// Bytes held per slot in the slab plus the index's key, value and control byte: a lower
    /// bound. The index's spare capacity (load factor, power-of-two growth) and the slab's
    /// growth add more; BENCHMARKS.md has the measured figure.
    pub fn bytes_per_entry() -> usize {
        std::mem::size_of::<Slot<K, V>>() + std::mem::size_of::<(K, u32)>() + 1
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
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn key(n: u32) -> Key {
        (IpAddr::V4(Ipv4Addr::from(n)), 0, 0)
    }

    #[test]
    fn evicts_oldest_and_reuses_slots() {
        let t0 = Instant::now();
        let p = |s: u64| Progress::first(t0 + Duration::from_secs(s + 10), 3);
        let mut t: Table = Table::new(3);
        for n in 0..3 {
            assert_eq!(t.insert_newest(key(n), p(n as u64)), None);
        }
        // re-inserting key 0 makes it the newest, so key 1 is now the oldest
        assert_eq!(t.insert_newest(key(0), p(5)), None);
        assert_eq!(t.insert_newest(key(9), p(6)), Some(key(1)));
        assert_eq!(t.len(), 3);
        assert_eq!(t.oldest().map(|(k, _)| k), Some(key(2)));
        assert!(t.remove(&key(0)).is_some());
        assert!(t.remove(&key(0)).is_none());
        assert_eq!(t.insert_newest(key(10), p(7)), None);
        assert_eq!(t.slots.len(), 3, "the freed slot is reused");
        assert_eq!(t.pop_oldest(), Some(key(2)));
        assert_eq!(t.pop_oldest(), Some(key(9)));
        assert_eq!(t.pop_oldest(), Some(key(10)));
        assert_eq!(t.pop_oldest(), None);
        assert_eq!(t.len(), 0);
    }
}
