//! The firewall watch: knockerd learns from the kernel when anything changes its table.
//!
//! nftables announces every committed change on the netlink multicast group NFNLGRP_NFTABLES
//! (what `nft monitor` shows). knockerd subscribes to it, so a `nft flush ruleset`, a
//! `systemctl restart nftables` (Debian's `/etc/nftables.conf` begins with `flush ruleset`) or a
//! stray `nft delete table inet knocker` is seen within microseconds, without polling. The daemon
//! then checks the table against what it should be ([`crate::ruleset::verify`]) and puts back what
//! is missing: the table, its protection and every live grant.
//!
//! The messages are read as the kernel sends them, but nothing in them is trusted beyond "look
//! at the table now": a malformed or unexpected message is skipped, and a lost one (the socket's
//! buffer overran) counts as a change.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use netlink_sys::Socket;

use crate::netlink::{find_attr, set_receive_buffer, NetlinkMessages, NFGENMSG_LEN};

// include/uapi/linux/netfilter/nfnetlink.h, nf_tables.h, linux/netfilter.h
/// The multicast group nftables announces committed changes on.
const NFNLGRP_NFTABLES: u32 = 7;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFPROTO_INET: u8 = 1;
/// NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE and NFTA_SET_TABLE are all attribute 1.
const NFTA_TABLE: u16 = 1;

/// Room for a burst of announcements (a big ruleset's reload announces every rule).
const RCVBUF_BYTES: usize = 1 << 20;
const RECV_BUF_BYTES: usize = 64 << 10;
/// NFTA_SET_NAME.
const NFTA_SET_NAME: u16 = 2;
/// nft names the sets it makes for a rule's `{ ... }` `__set0`, `__set1`, ...
const ANONYMOUS_SET_PREFIX: &[u8] = b"__set";

/// Whether a set message is about one of nft's anonymous sets.
fn anonymous_set(payload: &[u8]) -> bool {
    let attrs = payload.get(NFGENMSG_LEN..).unwrap_or(&[]);
    find_attr(attrs, NFTA_SET_NAME).is_some_and(|n| n.starts_with(ANONYMOUS_SET_PREFIX))
}

/// A read stops after this many datagrams, so a storm of other tables' changes cannot keep the
/// daemon from its timers; the socket stays readable and the next poll returns at once.
const MAX_DATAGRAMS_PER_READ: usize = 256;

/// What a batch of announcements said about knockerd's table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Touched {
    /// The table, a chain or a rule of it was created, changed or deleted: look at it.
    pub changed: bool,
    /// The table or one of its sets was deleted: whatever the sets held (the grants) is gone,
    /// even if the same transaction created them again (an atomic reload with the include).
    pub emptied: bool,
    /// Announcements were lost (the socket overran): anything may have happened.
    pub lost: bool,
}

impl Touched {
    /// Whether the table must be looked at.
    pub fn any(&self) -> bool {
        self.changed || self.emptied || self.lost
    }

    fn merge(&mut self, other: Touched) {
        self.changed |= other.changed;
        self.emptied |= other.emptied;
        self.lost |= other.lost;
    }
}

/// Reads one datagram of nftables announcements and says what it did to table `inet <table>`.
/// Set elements (grants being added, refreshed and expiring) are not a change of the table.
pub fn classify(datagram: &[u8], table: &str) -> Touched {
    let mut t = Touched::default();
    for msg in NetlinkMessages::new(datagram) {
        let Ok(msg) = msg else { break };
        if msg.ty >> 8 != NFNL_SUBSYS_NFTABLES {
            continue;
        }
        let kind = msg.ty & 0xff;
        let (changed, emptied) = match kind {
            NFT_MSG_DELTABLE => (true, true),
            // an anonymous set (`{ tcp . 22 }` in a rule) goes with its rule; a named one
            // (the allow sets) takes its elements with it
            NFT_MSG_DELSET => (true, !anonymous_set(msg.payload)),
            NFT_MSG_NEWTABLE | NFT_MSG_NEWCHAIN | NFT_MSG_DELCHAIN | NFT_MSG_NEWRULE
            | NFT_MSG_DELRULE | NFT_MSG_NEWSET => (true, false),
            _ => continue,
        };
        if msg.payload.first() != Some(&NFPROTO_INET) {
            continue;
        }
        let attrs = msg.payload.get(NFGENMSG_LEN..).unwrap_or(&[]);
        let name = find_attr(attrs, NFTA_TABLE).map(|v| v.split(|b| *b == 0).next().unwrap_or(v));
        if name == Some(table.as_bytes()) {
            t.changed |= changed;
            t.emptied |= emptied;
        }
    }
    t
}

/// A netlink socket subscribed to nftables' announcements, read without blocking.
pub struct FirewallWatch {
    socket: Socket,
    table: String,
    buf: Vec<u8>,
}

impl FirewallWatch {
    /// Subscribes to nftables' announcements in the calling thread's network namespace.
    pub fn open(table: &str) -> io::Result<FirewallWatch> {
        let socket = crate::nftset::netfilter_socket()?;
        socket.add_membership(NFNLGRP_NFTABLES).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot subscribe to nftables' change notifications: {e}"),
            )
        })?;
        socket.set_non_blocking(true)?;
        set_receive_buffer(&socket, RCVBUF_BYTES);
        Ok(FirewallWatch {
            socket,
            table: table.to_string(),
            buf: vec![0; RECV_BUF_BYTES],
        })
    }

    /// Reads what has arrived (at most `MAX_DATAGRAMS_PER_READ` (256) datagrams) and says what it did
    /// to the table.
    pub fn read(&mut self) -> io::Result<Touched> {
        let mut t = Touched::default();
        for _ in 0..MAX_DATAGRAMS_PER_READ {
            match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(0) => break,
                Ok(n) => t.merge(classify(&self.buf[..n.min(self.buf.len())], &self.table)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // the kernel dropped announcements: what they said is unknown
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => t.lost = true,
                Err(e) => return Err(e),
            }
        }
        Ok(t)
    }
}

impl AsFd for FirewallWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One netlink message: header, nfgenmsg (family), one string attribute 1.
    fn msg(kind: u16, family: u8, table: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        let name = [table.as_bytes(), &[0]].concat();
        attr.extend_from_slice(&((4 + name.len()) as u16).to_ne_bytes());
        attr.extend_from_slice(&NFTA_TABLE.to_ne_bytes());
        attr.extend_from_slice(&name);
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut payload = vec![family, 0, 0, 0];
        payload.extend_from_slice(&attr);
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | kind).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&payload);
        m
    }

    #[test]
    fn a_deleted_table_is_emptied_and_changed() {
        let t = classify(&msg(NFT_MSG_DELTABLE, NFPROTO_INET, "knocker"), "knocker");
        assert_eq!(
            t,
            Touched {
                changed: true,
                emptied: true,
                lost: false
            }
        );
        let t = classify(&msg(NFT_MSG_DELSET, NFPROTO_INET, "knocker"), "knocker");
        assert!(t.emptied);
    }

    #[test]
    fn an_anonymous_set_going_with_its_rule_empties_nothing() {
        // what `flush chain` announces for a rule's `{ tcp . 7000, ... }`, as the kernel sent it
        let payload: [u8; 40] = [
            1, 0, 0, 4, 12, 0, 1, 0, 107, 110, 111, 99, 107, 101, 114, 0, 11, 0, 2, 0, 95, 95, 115,
            101, 116, 48, 0, 0, 12, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 8,
        ];
        let mut d = Vec::new();
        d.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        d.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSET).to_ne_bytes());
        d.extend_from_slice(&[0; 10]);
        d.extend_from_slice(&payload);
        let t = classify(&d, "knocker");
        assert!(t.changed && !t.emptied, "{t:?}");
    }

    #[test]
    fn rules_and_chains_are_changes() {
        for kind in [
            NFT_MSG_NEWRULE,
            NFT_MSG_DELRULE,
            NFT_MSG_DELCHAIN,
            NFT_MSG_NEWCHAIN,
        ] {
            let t = classify(&msg(kind, NFPROTO_INET, "knocker"), "knocker");
            assert!(t.changed && !t.emptied, "{kind}");
        }
    }

    #[test]
    fn grants_and_other_tables_are_not() {
        // NEWSETELEM, DELSETELEM: grants, ours or expiring
        for kind in [12, 14] {
            assert!(!classify(&msg(kind, NFPROTO_INET, "knocker"), "knocker").any());
        }
        // another table, another family, a table whose name only starts like ours
        assert!(!classify(&msg(NFT_MSG_DELTABLE, NFPROTO_INET, "filter"), "knocker").any());
        assert!(!classify(&msg(NFT_MSG_DELTABLE, 2, "knocker"), "knocker").any());
        assert!(!classify(&msg(NFT_MSG_DELTABLE, NFPROTO_INET, "knocker2"), "knocker").any());
    }

    #[test]
    fn a_datagram_of_many_messages_merges() {
        let mut d = msg(NFT_MSG_NEWRULE, NFPROTO_INET, "filter");
        d.extend(msg(NFT_MSG_DELRULE, NFPROTO_INET, "knocker"));
        d.extend(msg(NFT_MSG_DELTABLE, NFPROTO_INET, "knocker"));
        let t = classify(&d, "knocker");
        assert!(t.changed && t.emptied);
    }

    #[test]
    fn garbage_is_skipped_without_panic() {
        for len in 0..64 {
            let d = msg(NFT_MSG_DELTABLE, NFPROTO_INET, "knocker");
            let _ = classify(&d[..len.min(d.len())], "knocker");
        }
        assert!(!classify(&[0xff; 40], "knocker").any());
        let mut d = msg(NFT_MSG_DELTABLE, NFPROTO_INET, "knocker");
        d[20] = 0xff; // the attribute's length
        let _ = classify(&d, "knocker");
    }
}
