//! Fuzzes what the packet socket source does with each packet the kernel hands it (from the IP
//! header on: `Watch::classify`, the bounded IP/TCP/UDP parsing NFLOG shares) and the link-layer
//! parsing of captured frames (`frame::l3`, every link type). Must never panic; a knock it picks
//! is always to a watched port, and an SPA payload is never longer than NFLOG would copy.
#![no_main]

use knocker_wire::{Proto, Service};
use knockerd::source::frame::{l3, LinkType, Seen, Watch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let watch = Watch::new(
        vec![Service::tcp(7000), Service::udp(9000)],
        vec![(Proto::Tcp, 40000, 40999)],
        vec![62201],
        vec![2222],
    );
    let watched = |s: Service| {
        watch
            .spans()
            .iter()
            .any(|&(p, a, b)| p == s.proto && (a..=b).contains(&s.port))
    };
    match watch.classify(data) {
        Some(Seen::Knock(k)) => assert!(watched(k.service())),
        Some(Seen::Datagram(d)) => {
            assert!(watched(d.knock.service()));
            assert!(d.payload.len() <= usize::from(knockerd::nflog::SPA_SNAPLEN));
        }
        None => {}
    }
    for link in [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::RawIp,
    ] {
        if let Some(packet) = l3(link, data) {
            assert!(packet.len() <= data.len());
            let _ = watch.classify(packet);
        }
    }
});
