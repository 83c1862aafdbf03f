//! CPU per log line of the line sources' parsers, next to NFLOG's parse of the same knock, for
//! BENCHMARKS.md's flood figures. One element = one line (or packet).
//!
//! - `kernel_log/kmsg_record`: a /dev/kmsg record as the kernel returns it (a real nft `log`
//!   line of a SYN with `flags tcp sequence`): record header, prefix, netfilter fields.
//! - `kernel_log/kern_log_line`: the same line as rsyslog writes it to kern.log (syslog header,
//!   `kernel:` tag, timestamp, prefix, fields).
//! - `kernel_log/other_record`: a kernel record that is not a knock (the common case on a busy
//!   host): rejected at the prefix.
//! - `log_file/match`: a router's deny line through a format (`required`, then `pattern` with
//!   five captures); `log_file/not_selected`: a line that no format's `required` matches.
//! - `nflog/parse_l3`: NFLOG's parse of the same SYN's IP and TCP headers (`nflog::parse_l3`),
//!   the part of NFLOG's per-packet cost that a line parser replaces.
//! - `packet/frame`: what the packet source (and `knockerd replay`) does with the same SYN in
//!   an Ethernet frame: the link layer off (`frame::l3`), then `Watch::classify` (the watched
//!   ports of a door, the knock parsed); `packet/unwatched`: a frame to a port no door watches
//!   (what the BPF filter lets through only if it is watched; replays see every frame).
//!
//! `cargo bench -p knockerd --bench log_lines` (add `-- --test` for a quick smoke run).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use knockerd::source::kernel_log::{parse_kmsg_record, parse_netfilter, Prefixes};
use knockerd::source::log_file::{parse_line, LogFormat};

const KMSG: &[u8] = b"4,344,21548744736,-;knocker: IN=va16001 OUT= MAC=5e:4e:3e:5f:a2:3c:fa:1a:27:b2:92:48:08:00 SRC=10.200.77.2 DST=10.200.77.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=15358 DF PROTO=TCP SPT=60142 DPT=7000 SEQ=2768744136 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 \n";
const KERN_LOG: &str = "2026-12-02T14:03:11.512345+00:00 srv kernel: [21548.744736] knocker: IN=va16001 OUT= MAC=5e:4e:3e:5f:a2:3c:fa:1a:27:b2:92:48:08:00 SRC=10.200.77.2 DST=10.200.77.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=15358 DF PROTO=TCP SPT=60142 DPT=7000 SEQ=2768744136 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 ";
const OTHER: &[u8] = b"6,345,21549752368,-;e1000e 0000:00:19.0 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: None\n";
const ASA: &str = "Dec  2 14:03:11 gw.example %ASA-4-106023: Deny tcp src outside:203.0.113.7/40211 dst inside:198.51.100.10/7000 by access-group \"outside_in\" [0x0, 0x0]";
const SSHD: &str = "Dec  2 14:03:12 gw.example sshd[4242]: Connection closed by authenticating user root 203.0.113.9 port 50122 [preauth]";

fn kernel_log(c: &mut Criterion) {
    let prefixes = Prefixes::new(None);
    let mut g = c.benchmark_group("kernel_log");
    g.throughput(Throughput::Elements(1));
    g.bench_function("kmsg_record", |b| {
        b.iter(|| {
            let r = parse_kmsg_record(black_box(KMSG)).expect("record");
            let text = prefixes.strip(r.message).expect("prefix");
            black_box(parse_netfilter(text).expect("line").knock)
        })
    });
    g.bench_function("kern_log_line", |b| {
        b.iter(|| {
            let text = prefixes.strip_syslog(black_box(KERN_LOG)).expect("prefix");
            black_box(parse_netfilter(text).expect("line").knock)
        })
    });
    g.bench_function("other_record", |b| {
        b.iter(|| {
            let r = parse_kmsg_record(black_box(OTHER)).expect("record");
            black_box(prefixes.strip(r.message).is_none())
        })
    });
    g.finish();
}

fn log_file(c: &mut Criterion) {
    let formats = [LogFormat::new(
        "asa",
        r"%ASA-\d-106023: Deny ",
        r"Deny (?P<proto>tcp|udp) src [^:]+:(?P<src>[0-9a-fA-F.:]+)/(?P<sport>\d+) dst [^:]+:(?P<dst>[0-9a-fA-F.:]+)/(?P<dport>\d+)",
    )
    .expect("format")];
    let mut g = c.benchmark_group("log_file");
    g.throughput(Throughput::Elements(1));
    g.bench_function("match", |b| {
        b.iter(|| black_box(parse_line(&formats, black_box(ASA)).expect("knock").1.knock))
    });
    g.bench_function("not_selected", |b| {
        b.iter(|| black_box(parse_line(&formats, black_box(SSHD)).is_err()))
    });
    g.finish();
}

fn nflog(c: &mut Criterion) {
    let mut packet = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 200, 77, 2], [10, 200, 77, 1], 64)
        .tcp(60142, 7000, 2_768_744_136, 64240)
        .syn()
        .write(&mut packet, &[])
        .expect("packet");
    let mut g = c.benchmark_group("nflog");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_l3", |b| {
        b.iter(|| black_box(knockerd::nflog::parse_l3(black_box(&packet)).expect("knock")))
    });
    g.finish();
}

fn packet(c: &mut Criterion) {
    use knockerd::source::frame::{l3, LinkType, Watch};
    let frame_to = |port: u16| {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2(
            [0x5e, 0x4e, 0x3e, 0x5f, 0xa2, 0x3c],
            [0xfa, 0x1a, 0x27, 0xb2, 0x92, 0x48],
        )
        .ipv4([10, 200, 77, 2], [10, 200, 77, 1], 64)
        .tcp(60142, port, 2_768_744_136, 64240)
        .syn()
        .write(&mut frame, &[])
        .expect("frame");
        frame
    };
    let (knock, other) = (frame_to(7000), frame_to(443));
    let watch = Watch::new(
        vec![
            knocker_engine::Service::tcp(7000),
            knocker_engine::Service::udp(9000),
            knocker_engine::Service::tcp(8000),
        ],
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut g = c.benchmark_group("packet");
    g.throughput(Throughput::Elements(1));
    g.bench_function("frame", |b| {
        b.iter(|| {
            let ip = l3(LinkType::Ethernet, black_box(&knock)).expect("ip");
            black_box(watch.classify(ip).expect("watched"))
        })
    });
    g.bench_function("unwatched", |b| {
        b.iter(|| {
            let ip = l3(LinkType::Ethernet, black_box(&other)).expect("ip");
            black_box(watch.classify(ip).is_none())
        })
    });
    g.finish();
}

criterion_group!(benches, kernel_log, log_file, nflog, packet);
criterion_main!(benches);
