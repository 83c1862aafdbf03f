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
//! The kernel batches too while a flood lasts: each start and end of one ([`Pacer::change`])
//! is reported to the root parent, which turns NFLOG's batching on and off on the worker's
//! socket (configuring an NFLOG instance needs CAP_NET_ADMIN of the sender, which the worker
//! gave up before it read its first packet; `nflog::BatchingHandle`). The pause then takes a
//! few datagrams of many packets each instead of many datagrams of one.

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
    /// The state last given out by [`Pacer::change`].
    told: bool,
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
        self.window = Some((now, 0));
    }

    /// Whether a flood is on.
    #[cfg(test)]
    pub fn flooding(&self) -> bool {
        self.flooding
    }

    /// `Some(flooding)` when a flood started or ended since the last call, once per change.
    pub fn change(&mut self) -> Option<bool> {
        (self.flooding != self.told).then(|| {
            self.told = self.flooding;
            self.flooding
        })
    }

    /// How long to sleep before the next poll: [`Pacer::PAUSE`] during a flood, else nothing.
    pub fn pause(&self) -> Option<Duration> {
        self.flooding.then_some(Self::PAUSE)
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
        assert_eq!(p.change(), None, "a quiet server reports nothing");
        p.read(t + us(10), Pacer::BURST);
        assert!(p.flooding());
        assert_eq!(p.change(), Some(true), "the start, once");
        p.read(t + us(20), Pacer::BURST);
        assert_eq!(p.change(), None);
        // the window that ends with the burst, then two calm ones
        for ms in [3, 6, 9] {
            p.read(t + Duration::from_millis(ms), 0);
        }
        assert!(!p.flooding());
        assert_eq!(p.change(), Some(false), "the end, once");
        assert_eq!(p.change(), None);
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
