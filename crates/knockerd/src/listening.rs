//! Which ports local services listen on, from `/proc/net/{tcp,tcp6,udp,udp6}` of the network
//! namespace the process runs in: so that `check` can warn when knockerd would drop a service's
//! packets because its port is a knock port.

use knocker_engine::{Proto, Service};

/// The kernel's TCP_LISTEN state, as /proc/net/tcp prints it.
const TCP_LISTEN: &str = "0A";
/// TCP_CLOSE: what /proc/net/udp prints for a bound socket that is not connected (a server's).
const UDP_UNCONNECTED: &str = "07";

/// The local ports of listening sockets in one /proc/net/{tcp,tcp6,udp,udp6} text: TCP sockets
/// in LISTEN, UDP sockets bound but not connected. Lines that do not read as a socket (the
/// header, anything cut short or odd) are skipped.
pub fn parse(text: &str, proto: Proto) -> Vec<u16> {
    let state = match proto {
        Proto::Tcp => TCP_LISTEN,
        Proto::Udp => UDP_UNCONNECTED,
        // no socket listens for an ICMP step
        Proto::Icmp => return Vec::new(),
    };
    let mut ports: Vec<u16> = text
        .lines()
        .filter_map(|line| {
            // "sl local_address rem_address st ...": e.g. "0: 00000000:0016 00000000:0000 0A"
            let mut fields = line.split_whitespace();
            fields.next().filter(|sl| sl.ends_with(':'))?;
            let local = fields.next()?;
            let _remote = fields.next()?;
            if !fields.next()?.eq_ignore_ascii_case(state) {
                return None;
            }
            let (_addr, port) = local.rsplit_once(':')?;
            u16::from_str_radix(port, 16).ok().filter(|p| *p != 0)
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The services local sockets listen on, in this network namespace. A file that cannot be read
/// (no IPv6, say) contributes nothing.
pub fn services() -> Vec<Service> {
    let mut v = Vec::new();
    for (file, proto) in [
        ("tcp", Proto::Tcp),
        ("tcp6", Proto::Tcp),
        ("udp", Proto::Udp),
        ("udp6", Proto::Udp),
    ] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/net/{file}")) {
            v.extend(
                parse(&text, proto)
                    .into_iter()
                    .map(|p| Service::new(proto, p)),
            );
        }
    }
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 17721 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 23456 1 0000000000000000 100 0 0 10 0
   2: 0A00020F:0016 0A000201:D431 01 00000000:00000000 02:0009B0D2 00000000     0        0 31337 4 0000000000000000 20 4 31 10 -1
   3: garbage
   4: 00000000:ZZZZ 00000000:0000 0A
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:63DD 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 17723 1 0000000000000000 100 0 0 10 0
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  347: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 19045 2 0000000000000000 0
  901: 0A00020F:C35A 08080808:0035 01 00000000:00000000 00:00000000 00000000  1000        0 40001 2 0000000000000000 0
";

    #[test]
    fn reads_listening_sockets_and_skips_the_rest() {
        // ssh on 22 and 8080 on loopback listen; the established connection does not count
        assert_eq!(parse(TCP, Proto::Tcp), vec![22, 8080]);
        assert_eq!(parse(TCP6, Proto::Tcp), vec![25565]);
        // dhclient's 68 is bound; the connected DNS client's ephemeral port is not a service
        assert_eq!(parse(UDP, Proto::Udp), vec![68]);
        assert!(parse(TCP, Proto::Udp).is_empty());
        for odd in [
            "",
            ":",
            "0:",
            "0: :",
            "0: a b 0A",
            "0: 0:0 0:0 0A",
            "\u{0}\u{ff}",
        ] {
            assert!(parse(odd, Proto::Tcp).is_empty(), "{odd:?}");
        }
    }

    #[test]
    fn sees_a_listener_of_its_own() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let s = services();
        let tcp_port = tcp.local_addr().expect("addr").port();
        let udp_port = udp.local_addr().expect("addr").port();
        assert!(s.contains(&Service::tcp(tcp_port)), "{s:?}");
        assert!(s.contains(&Service::udp(udp_port)), "{s:?}");
        assert!(s.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
    }
}
