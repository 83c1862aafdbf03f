//! What the bench reads from /proc about the daemons and the kernel.

use std::process::Command;

/// CPU time (user + system) a process has used so far, in seconds, from /proc/PID/stat. It
/// counts every thread, also threads that have exited.
pub fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    parse_cpu_ticks(&stat)
        .map(|ticks| ticks as f64 / clock_ticks())
        .ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))
}

/// CPU time (user + system) of a process's children that have exited and been waited for (fwknopd
/// runs `iptables` for each rule it adds or removes), in seconds.
pub fn children_cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    parse_children_ticks(&stat)
        .map(|ticks| ticks as f64 / clock_ticks())
        .ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))
}

/// cutime + cstime (fields 16 and 17) of a /proc/PID/stat line.
pub fn parse_children_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let cutime: u64 = fields.get(13)?.parse().ok()?;
    let cstime: u64 = fields.get(14)?.parse().ok()?;
    Some(cutime + cstime)
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line; the command name (field 2) may
/// contain spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, i.e. index 11 here
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// A `kB` field of /proc/PID/status (VmRSS, VmHWM), in bytes.
pub fn status_bytes(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kb(&status, key).map(|kb| kb * 1024)
}

pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        v.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// Packets an interface of a namespace has received, from `ip -s -j link`.
pub fn rx_packets(netns: &str, ifname: &str) -> Option<u64> {
    let out = Command::new("ip")
        .args(["-n", netns, "-s", "-j", "link", "show", "dev", ifname])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get(0)?
        .get("stats64")?
        .get("rx")?
        .get("packets")?
        .as_u64()
}

/// Messages the kernel dropped because the receiving socket was full, summed over the netfilter
/// netlink sockets of a namespace (in the server namespace: knockerd's NFLOG and nftables
/// sockets): the `Drops` column of /proc/net/netlink, read inside the namespace.
pub fn netlink_drops(netns: &str) -> Option<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "cat", "/proc/net/netlink"])
        .output()
        .ok()?;
    parse_netlink_drops(&String::from_utf8_lossy(&out.stdout))
}

pub fn parse_netlink_drops(table: &str) -> Option<u64> {
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (eth, drops) = (col("Eth")?, col("Drops")?);
    let mut total = None;
    for l in lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        // NETLINK_NETFILTER is protocol 12
        if f.get(eth) == Some(&"12") {
            let d: u64 = f.get(drops)?.parse().ok()?;
            total = Some(total.unwrap_or(0) + d);
        }
    }
    total
}

/// The live children of a process (knockerd's packet worker).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// [`cpu_seconds`] of a process and its live children together: knockerd reads packets in a
/// child process (its unprivileged packet worker), so its cost is the sum.
pub fn tree_cpu_seconds(pid: u32) -> Result<f64, String> {
    let mut total = cpu_seconds(pid)?;
    for child in children(pid) {
        total += cpu_seconds(child).unwrap_or(0.0);
    }
    Ok(total)
}

/// [`status_bytes`] of a process and its live children, added up.
pub fn tree_status_bytes(pid: u32, key: &str) -> Option<u64> {
    let mut total = status_bytes(pid, key)?;
    for child in children(pid) {
        total += status_bytes(child, key).unwrap_or(0);
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let stat = "4242 (kno ck) d) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 1000 1000 100";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_children_ticks(stat), Some(0));
        let stat =
            "77 (fwknopd) S 1 77 77 0 -1 4194560 100 0 0 0 250 75 12 8 20 0 1 0 1000 1000 100";
        assert_eq!(parse_children_ticks(stat), Some(20));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_fields_in_kb() {
        let s = "Name:\tknockd\nVmHWM:\t   33792 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(parse_status_kb(s, "VmHWM"), Some(33792));
        assert_eq!(parse_status_kb(s, "VmRSS"), Some(1024));
        assert_eq!(parse_status_kb(s, "VmPeak"), None);
    }

    #[test]
    fn netlink_drops_of_netfilter_sockets() {
        let t = "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n\
                 0000000000000000 0   1          00000000 0        0        0     2        0        10\n\
                 0000000000000000 12  777        00000000 0        0        0     2        1234     11\n\
                 0000000000000000 12  778        00000000 0        0        0     2        5        12\n";
        assert_eq!(parse_netlink_drops(t), Some(1239));
        assert_eq!(parse_netlink_drops(&t.replace(" 12  ", " 16  ")), None);
    }
}
