//! How long the packet worker waits before it polls its source again: not at all on a quiet
//! server, a short pause while a flood lasts.
//!
//! Every NFLOG packet is its own netlink message (the kernel flushes at once, so that a lone
//! knock opens in well under a millisecond), so under a flood a worker that polls again as soon
//! as it has drained the socket is woken for every packet or two: a task switch and a poll each,
//! which cost more than the packet itself (BENCHMARKS.md, "SYN flood"). The [`Pacer`] watches the
//! rate the reads see, over windows of [`Pacer::WINDOW`]: from [`Pacer::FLOOD_PPS`] on it is a
//! flood, and the worker sleeps [`Pacer::PAUSE`] after each read, so that the next read takes
//! everything that came meanwhile (tens of packets); it is over once
//! [`Pacer::CALM_WINDOWS`] windows in a row saw less than [`Pacer::CALM_PPS`]. A single read of
//! [`Pacer::BURST`] packets or more is a flood at once. The gap between the two rates is the
//! hysteresis: a rate between them keeps the state it finds.
//!
//! A knock never waits on a quiet server. During a flood it waits at most one pause more; after
//! a flood the pause stops within two windows, and even then it only delays a poll, not a read
//! that is already due.
//!
//! From [`Pacer::BATCH_PPS`] on the kernel batches too ([`Pacer::batching`]): each change is
//! reported to the root parent ([`Pacer::change`]), which turns NFLOG's batching on and off on
//! the worker's socket (configuring an NFLOG instance needs CAP_NET_ADMIN of the sender, which
//! the worker gave up before it read its first packet; `nflog::BatchingHandle`). While a read
//! finds the kernel batching ([`Pacer::kernel_batches`]: a datagram of more than one packet)
//! the worker does not pause: each datagram is a batch already, one wake-up for many packets,
//! and the pause only added a second wake-up (its timer's) to each read, which cost more than
//! all the packets' parsing (BENCHMARKS.md, "SYN flood"). Whether the kernel batches is what
//! the reads show, not what was asked: a request the parent could not send or the kernel
//! refused, or a source that cannot batch, leaves the pause on. Not from the
//! flood rate already: the kernel flushes a batch when it is full or at its next timer tick, so
//! at 10 000 packets a second a knock would wait for the tick (up to 4 ms at HZ=250) where one
//! packet per datagram keeps up well (BENCHMARKS.md, "SPA flood"). It stops below
//! [`Pacer::UNBATCH_PPS`], or with the flood.

use std::time::{Duration, Instant};

/// The worker's flood detector: fed every read, it says whether to pause before the next poll.
/// Driven by explicit timestamps (no clock of its own), so its tests are exact.
#[derive(Debug, Clone, Default)]
pub struct Pacer {
    flooding: bool,
    /// The current window: when it started, and the packets read in it so far.
    window: Option<(Instant, u64)>,
    /// Consecutive windows below [`Pacer::CALM_PPS`] while flooding.
    calm: u32,
    /// Whether the kernel is to batch (a flood of [`Pacer::BATCH_PPS`] or more).
    batching: bool,
    /// The batching last given out by [`Pacer::change`].
    told: bool,
    /// Whether the last read that took packets found the kernel batching them.
    kernel_batches: bool,
}

impl Pacer {
    /// The span over which the rate is measured.
    pub const WINDOW: Duration = Duration::from_millis(2);
    /// From this many packets a second the worker pauses (8 packets in a window).
    pub const FLOOD_PPS: u64 = 4_000;
    /// Below this many packets a second a window is calm (2 packets in a window).
    pub const CALM_PPS: u64 = 1_000;
    /// Calm windows in a row that end a flood.
    pub const CALM_WINDOWS: u32 = 2;
    /// A read of this many packets is a flood at once.
    pub const BURST: usize = 8;
    /// The pause before each poll while a flood lasts: what one knock may wait more.
    pub const PAUSE: Duration = Duration::from_micros(500);
    /// From this many packets a second (in one window) the kernel is to batch: a batch of
    /// `nflog::FLOOD_QTHRESH` (128) fills in 2.6 ms at most.
    pub const BATCH_PPS: u64 = 50_000;
    /// Below this many packets a second (in one window) it is to stop.
    pub const UNBATCH_PPS: u64 = 10_000;

    /// Counts a read at `now` that took `packets` packets (0 for a wake-up with none: a timer,
    /// the parent's ping).
    pub fn read(&mut self, now: Instant, packets: usize) {
        let packets = packets as u64;
        if packets >= Self::BURST as u64 {
            self.flooding = true;
            self.calm = 0;
        }
        let Some((start, count)) = self.window else {
            self.window = Some((now, packets));
            return;
        };
        let count = count.saturating_add(packets);
        let elapsed = now.saturating_duration_since(start);
        if elapsed < Self::WINDOW {
            self.window = Some((start, count));
            return;
        }
        // the rate over the window, compared without division: count / elapsed vs. pps
        let nanos = elapsed.as_nanos();
        let per_second = |pps: u64| u128::from(pps) * nanos;
        let scaled = u128::from(count) * 1_000_000_000;
        if scaled >= per_second(Self::FLOOD_PPS) {
            self.flooding = true;
            self.calm = 0;
        } else if scaled < per_second(Self::CALM_PPS) {
            if self.flooding {
                self.calm += 1;
                if self.calm >= Self::CALM_WINDOWS {
                    self.flooding = false;
                    self.calm = 0;
                }
            }
        } else {
            self.calm = 0;
        }
        if scaled >= per_second(Self::BATCH_PPS) {
            self.batching = true;
        } else if scaled < per_second(Self::UNBATCH_PPS) {
            self.batching = false;
        }
        self.batching &= self.flooding;
        self.window = Some((now, 0));
    }

    /// Whether a flood is on.
    #[cfg(test)]
    pub fn flooding(&self) -> bool {
        self.flooding
    }

    /// Whether the kernel is to batch.
    #[cfg(test)]
    pub fn batching(&self) -> bool {
        self.batching
    }

    /// `Some(batching)` when the kernel's batching is to start or stop since the last call,
    /// once per change.
    pub fn change(&mut self) -> Option<bool> {
        (self.batching != self.told).then(|| {
            self.told = self.batching;
            self.batching
        })
    }

    /// Says whether the read just counted, one that took packets, found the kernel batching
    /// them (a datagram of more than one packet). Holds until the next read with packets.
    pub fn kernel_batches(&mut self, batched: bool) {
        self.kernel_batches = batched;
    }

    /// How long to sleep before the next poll: [`Pacer::PAUSE`] during a flood that the kernel
    /// does not batch, else nothing.
    pub fn pause(&self) -> Option<Duration> {
        (self.flooding && !self.kernel_batches).then_some(Self::PAUSE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// Reads of `each` packets every `every` from `*t` for `span`, advancing `*t`.
    fn feed(p: &mut Pacer, t: &mut Instant, every: Duration, each: usize, span: Duration) {
        let end = *t + span;
        while *t < end {
            *t += every;
            p.read(*t, each);
        }
    }

    #[test]
    fn a_quiet_server_never_pauses() {
        let mut p = Pacer::default();
        let mut t = Instant::now();
        p.read(t, 1);
        assert_eq!(p.pause(), None, "a lone knock");
        // a knock sequence: three packets within a millisecond, then nothing for a second
        for _ in 0..3 {
            t += us(300);
            p.read(t, 1);
        }
        t += Duration::from_secs(1);
        p.read(t, 0);
        assert_eq!(p.pause(), None);
        // 500 packets a second, one per read: below the flood rate
        feed(&mut p, &mut t, us(2000), 1, Duration::from_secs(1));
        assert!(!p.flooding());
    }

    #[test]
    fn a_flood_of_single_packet_reads_is_seen_within_a_window_and_ends_after_two_calm_ones() {
        let mut p = Pacer::default();
        let mut t = Instant::now();
        p.read(t, 0);
        // 10 000 packets a second, read one at a time (the worker keeps up, packet by packet)
        feed(&mut p, &mut t, us(100), 1, us(1900));
        assert!(!p.flooding(), "not before a window has passed");
        feed(&mut p, &mut t, us(100), 1, us(200));
        assert!(p.flooding(), "one window at 10 000/s");
        assert_eq!(p.pause(), Some(Pacer::PAUSE));
        // the flood goes on, now read in batches after each pause
        feed(&mut p, &mut t, us(600), 6, Duration::from_millis(50));
        assert!(p.flooding());
        // it ends: the worker wakes for its timers only
        t += Duration::from_millis(3);
        p.read(t, 0);
        assert!(p.flooding(), "one calm window is not the end");
        t += Duration::from_millis(3);
        p.read(t, 0);
        assert!(!p.flooding(), "two are");
        assert_eq!(p.pause(), None);
    }

    #[test]
    fn a_big_read_is_a_flood_at_once() {
        let mut p = Pacer::default();
        let t = Instant::now();
        p.read(t, Pacer::BURST - 1);
        assert!(!p.flooding());
        p.read(t + us(10), Pacer::BURST);
        assert!(p.flooding());
    }

    #[test]
    fn the_kernel_batches_from_the_batch_rate_on_until_the_rate_or_the_flood_ends() {
        let mut p = Pacer::default();
        let mut t = Instant::now();
        p.read(t, 0);
        // 10 000 packets a second: a flood, not one to batch
        feed(&mut p, &mut t, us(500), 5, Duration::from_millis(20));
        assert!(p.flooding() && !p.batching());
        assert_eq!(p.change(), None, "nothing to report");
        // 100 000 a second: batch, reported once
        feed(&mut p, &mut t, us(500), 50, Duration::from_millis(5));
        assert!(p.batching());
        assert_eq!(p.change(), Some(true));
        assert_eq!(p.change(), None);
        // 20 000 a second: between the two rates, it stays
        feed(&mut p, &mut t, us(500), 10, Duration::from_millis(20));
        assert!(p.batching());
        assert_eq!(p.change(), None);
        // 5 000 a second: still a flood, no more batching
        feed(&mut p, &mut t, us(600), 3, Duration::from_millis(20));
        assert!(p.flooding() && !p.batching());
        assert_eq!(p.change(), Some(false));
        // batching again, then the flood ends at once: batching ends with it
        feed(&mut p, &mut t, us(500), 50, Duration::from_millis(5));
        assert_eq!(p.change(), Some(true));
        for _ in 0..3 {
            t += Duration::from_millis(3);
            p.read(t, 0);
        }
        assert!(!p.flooding() && !p.batching());
        assert_eq!(p.change(), Some(false));
        assert_eq!(p.change(), None);
    }

    #[test]
    fn no_pause_while_the_reads_find_the_kernel_batching() {
        let mut p = Pacer::default();
        let mut t = Instant::now();
        p.read(t, 0);
        feed(&mut p, &mut t, us(500), 50, Duration::from_millis(5));
        assert_eq!(p.change(), Some(true));
        assert_eq!(
            p.pause(),
            Some(Pacer::PAUSE),
            "asked, not yet seen in a read"
        );
        p.kernel_batches(true);
        assert_eq!(p.pause(), None, "each datagram is a batch");
        // a wake-up with no packet (a timer, the parent) changes nothing
        t += us(100);
        p.read(t, 0);
        assert_eq!(p.pause(), None);
        // datagrams of one packet again (the request failed, or batching ended): the pause
        p.read(t + us(100), 40);
        p.kernel_batches(false);
        assert!(p.flooding());
        assert_eq!(p.pause(), Some(Pacer::PAUSE));
        // and a quiet server never pauses, batched reads or not
        let mut quiet = Pacer::default();
        quiet.read(t, 2);
        quiet.kernel_batches(true);
        assert_eq!(quiet.pause(), None);
        quiet.kernel_batches(false);
        assert_eq!(quiet.pause(), None);
    }

    #[test]
    fn between_the_two_rates_the_state_holds() {
        // 2 000 packets a second: above the calm rate, below the flood rate
        let mut quiet = Pacer::default();
        let mut t = Instant::now();
        quiet.read(t, 0);
        feed(&mut quiet, &mut t, us(500), 1, Duration::from_millis(100));
        assert!(!quiet.flooding(), "does not start a flood");
        let mut flood = Pacer::default();
        let mut t = Instant::now();
        flood.read(t, Pacer::BURST);
        feed(&mut flood, &mut t, us(500), 1, Duration::from_millis(100));
        assert!(flood.flooding(), "does not end one");
        // a calm window, then a busier one, then a calm one again: not two in a row
        t += Duration::from_millis(3);
        flood.read(t, 0);
        feed(&mut flood, &mut t, us(500), 1, Duration::from_millis(3));
        t += Duration::from_millis(3);
        flood.read(t, 0);
        assert!(flood.flooding());
        t += Duration::from_millis(3);
        flood.read(t, 0);
        assert!(!flood.flooding());
    }

    #[test]
    fn time_going_backwards_or_huge_counts_do_not_panic() {
        let mut p = Pacer::default();
        let t = Instant::now() + Duration::from_secs(10);
        p.read(t, usize::MAX);
        p.read(t - Duration::from_secs(5), usize::MAX);
        p.read(t + Duration::from_secs(3600), usize::MAX);
        assert!(p.flooding());
    }
}
