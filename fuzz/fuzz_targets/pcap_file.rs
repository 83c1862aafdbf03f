//! Fuzzes what `knockerd replay` does with a capture file: the pcap/pcapng reader
//! (`knockerd::source::pcap`), the link layers (`source::frame::l3`: Ethernet with VLAN tags,
//! SLL, SLL2, raw IP) and the pick of watched packets (`Watch::classify`). Must never panic,
//! never hand out a record larger than its bound, and must end: every call to `next` either
//! reads input or ends the file.
#![no_main]

use knocker_wire::{Proto, Service};
use knockerd::source::frame::{l3, Watch};
use knockerd::source::pcap::{PcapReader, MAX_RECORD_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let watch = Watch::new(
        vec![Service::tcp(7000), Service::udp(9000)],
        vec![(Proto::Tcp, 40000, 40999)],
        vec![62201],
        vec![2222],
    );
    let Ok(mut reader) = PcapReader::new(data) else {
        return;
    };
    // each record costs at least 8 bytes of input: more calls than that is a loop
    let mut calls = 0usize;
    while let Some(record) = reader.next() {
        calls += 1;
        assert!(calls <= data.len() / 8 + 1, "the reader does not advance");
        let Ok(record) = record else { continue };
        assert!(record.data.len() <= MAX_RECORD_BYTES as usize);
        if let Some(packet) = l3(record.link, record.data) {
            let _ = watch.classify(packet);
        }
    }
});
