//! knockknock's knock against known answers made independently: `vectors/knockknock/vectors.py`
//! follows knockknock's own Python (CryptoEngine.py, knockknock.py) with another AES (the
//! `cryptography` package), and this test runs it, so the answers are computed, not pasted.
//! Needs python3 and its `cryptography` module (Debian: python3-cryptography; scripts/test.sh
//! installs it).

use std::path::Path;
use std::process::Command;

use knocker_wire::knockknock::{Key, Keys, Knock, Opened};

/// A deterministic spread of keys, counters and ports: edges and arbitrary values.
fn cases() -> Vec<([u8; 16], [u8; 16], u32, u16)> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let key = |next: &mut dyn FnMut() -> u64| {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&next().to_le_bytes());
        k[8..].copy_from_slice(&next().to_le_bytes());
        k
    };
    let mut out = vec![
        ([0u8; 16], [0u8; 16], 0, 0),
        ([0xFF; 16], [0xFF; 16], u32::MAX, u16::MAX),
    ];
    for (counter, port) in [(0, 22), (1, 22), (19, 443), (20, 8080), (1 << 31, 1)] {
        out.push((key(&mut next), key(&mut next), counter, port));
    }
    for _ in 0..25 {
        let (c, m) = (key(&mut next), key(&mut next));
        let r = next();
        out.push((c, m, (r >> 16) as u32, r as u16));
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn knocks_match_knockknocks_own_code() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/knockknock/vectors.py");
    let cases = cases();
    let args: Vec<String> = cases
        .iter()
        .map(|(c, m, n, p)| format!("{}:{}:{n}:{p}", hex(c), hex(m)))
        .collect();
    let out = Command::new("python3")
        .arg(&script)
        .args(&args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 (Debian: apt-get install python3 python3-cryptography): {e}")
        });
    assert!(
        out.status.success(),
        "{} failed (Debian: apt-get install python3-cryptography): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("text");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), cases.len(), "one answer per case: {text}");
    for ((c, m, counter, port), line) in cases.iter().zip(lines) {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 8, "{line}");
        assert_eq!((f[0], f[1]), (hex(c).as_str(), hex(m).as_str()), "{line}");
        let n = |i: usize| f[i].parse::<u64>().expect("a number");
        let want = Knock::from_fields(n(4) as u16, n(5) as u32, n(6) as u32, n(7) as u16);
        let keys = Keys {
            cipher: Key::from_bytes(*c),
            mac: Key::from_bytes(*m),
        };
        assert_eq!(keys.encrypt(*port, *counter), want, "encrypt: {line}");
        // the server finds it from any stored counter up to 19 behind, as knockknock's daemon
        let from = counter.saturating_sub(19);
        assert_eq!(
            keys.decrypt(&want, from, 20),
            Some(Opened {
                counter: *counter,
                port: *port
            }),
            "decrypt: {line}"
        );
        if *counter < u32::MAX {
            assert_eq!(keys.decrypt(&want, counter + 1, 20), None, "used: {line}");
        }
    }
}
