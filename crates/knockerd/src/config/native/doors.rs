//! knocker's own single-packet doors, as the engine runs them: the SPA datagram
//! (`kind = "spa"`) and the stealth SYN (`kind = "syn"`).
//!
//! Keys stay here, in the decoder closures handed to the engine (see `knocker_engine::Spa`):
//! the server's X25519 key, the per-door tag key derived from it, and one SYN key per enrolled
//! client (derived from the server key and the client's public key when the configuration is
//! loaded, so a SYN costs HMACs, never public-key math). The clients file lists public keys
//! only: revoking a client is deleting its table and reloading.
//!
//! Order of work for one packet, cheapest first (the engine does the replay memory, the
//! per-source rate limit and the policy around these):
//! - SPA: the 16-byte door tag (HMAC, constant time) as the engine's pre-check; then Noise to
//!   authenticate and decrypt (one X25519 operation for a client enrolled here, whose `ss` the
//!   door's `spa::Receiver` computed at load; two for any other key); then the client's key
//!   must be enrolled for this door and may ask only for what it is allowed.
//! - SYN: the packet must parse as a SYN with a timestamp option (pre-check); then its hint (the
//!   IPv4 ID or 16 bits of the IPv6 flow label) is looked up in the door's `syn::HintTable`,
//!   and only the (client, time step) it names are tried, one HMAC each, compared in constant
//!   time: `12 × clients / 65536` HMACs per garbage SYN on average, under two up to 10 000
//!   clients, not one per client.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use knocker_engine::{Refusal, Service, SpaDecode, SpaError, SpaPrecheck, SpaRequest};
use knocker_wire::identity::{DoorKey, PrivateKey, PublicKey};
use knocker_wire::{spa, syn};

use super::clients::Client;

/// How many time steps either side of the server's a SYN may be made for (one step is
/// [`syn::STEP_SECS`]): 30 to 60 s of clock skew.
pub const SYN_SKEW_STEPS: u8 = 1;

/// An enrolled client as one door sees it.
#[derive(Clone)]
struct Enrolled {
    name: String,
    /// What this client may open here: the door's `open`, narrowed by the client's own list.
    open: Vec<Service>,
    /// The longest a grant of this client may last, if the clients file caps it.
    open_for: Option<Duration>,
}

/// The clients enrolled for `door`, with what each may open there.
fn enrolled<'a>(
    clients: &'a [Client],
    door: &'a str,
    door_open: &'a [Service],
) -> impl Iterator<Item = (&'a Client, Enrolled)> + 'a {
    clients
        .iter()
        .filter(move |c| c.may_use(door))
        .map(move |c| {
            let open = match &c.open {
                Some(own) => door_open
                    .iter()
                    .filter(|s| own.contains(s))
                    .copied()
                    .collect(),
                None => door_open.to_vec(),
            };
            (
                c,
                Enrolled {
                    name: c.name.clone(),
                    open,
                    open_for: c.open_for,
                },
            )
        })
}

/// What a client asked for, checked against what it may open: the request for the engine.
fn request(
    who: &Enrolled,
    timestamp: u64,
    allow: Option<IpAddr>,
    services: Vec<Service>,
    duration: Option<u32>,
    replay_id: [u8; 32],
) -> Result<SpaRequest, SpaError> {
    if let Some(s) = services.iter().find(|s| !who.open.contains(s)) {
        return Err(SpaError::Refused(Refusal::NotOpened(*s)));
    }
    let cap = who
        .open_for
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    let client_timeout = match (duration, cap) {
        (Some(d), Some(c)) => Some(d.min(c)),
        (d, c) => d.or(c),
    };
    Ok(SpaRequest {
        username: who.name.clone(),
        timestamp,
        allow: allow.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        access: services,
        client_timeout,
        replay_id: Some(replay_id),
        counter: None,
        nat: None,
    })
}

/// The pre-check and decoder of a `kind = "spa"` door. The decoder's [`spa::Receiver`] holds
/// `ss` for each client enrolled here, computed now: a configuration (re)load makes a new one,
/// and the old one is wiped when the engine drops the old decoder.
pub fn spa_decoder(
    server: &PrivateKey,
    door: &str,
    door_open: &[Service],
    clients: &[Client],
) -> Result<(SpaPrecheck, SpaDecode), spa::ReceiverError> {
    let tag_key: Arc<DoorKey> = Arc::new(server.door_key(door));
    let by_key: HashMap<PublicKey, Enrolled> = enrolled(clients, door, door_open)
        .map(|(c, e)| (c.public_key, e))
        .collect();
    let receiver = spa::Receiver::new(server, &tag_key, by_key.keys())?;
    // clients enrolled for other doors only: named in their refusal, never granted here
    let elsewhere: HashMap<PublicKey, String> = clients
        .iter()
        .filter(|c| !c.may_use(door))
        .map(|c| (c.public_key, c.name.clone()))
        .collect();
    let precheck_key = Arc::clone(&tag_key);
    let precheck: SpaPrecheck =
        Arc::new(move |datagram: &[u8]| spa::check_tag(&precheck_key, datagram));
    let decode: SpaDecode = Arc::new(move |datagram: &[u8], _wall: u64| {
        // the tag passed: this was made by someone holding the door key, but Noise decides,
        // and the door's identity is in its prologue: a datagram re-tagged from another door
        // does not open here
        let (client, req) = match receiver.open(datagram) {
            Ok(opened) => opened,
            Err(e @ spa::OpenError::Unbound { client }) => {
                let who = by_key
                    .get(&client)
                    .map(|e| e.name.as_str())
                    .or_else(|| elsewhere.get(&client).map(String::as_str));
                return Err(SpaError::Unsupported(match who {
                    Some(name) => format!("client {name:?}: {e}"),
                    None => e.to_string(),
                }));
            }
            Err(_) => return Err(SpaError::NotForThisKey),
        };
        let Some(who) = by_key.get(&client) else {
            return Err(SpaError::Refused(match elsewhere.get(&client) {
                Some(name) => Refusal::NotEnrolledHere {
                    client: name.clone(),
                },
                None => Refusal::UnknownKey,
            }));
        };
        let id = spa::replay_id(&client, &req);
        request(
            who,
            req.timestamp,
            req.allow,
            req.services,
            req.duration,
            id,
        )
    });
    Ok((precheck, decode))
}

/// An enrolled client's public key that no SYN key can be derived from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("client {client:?} (line {line}): its public key cannot be used: {why}")]
pub struct UnusableKey {
    pub client: String,
    pub line: usize,
    pub why: String,
}

/// The pre-check and decoder of a `kind = "syn"` door.
pub fn syn_decoder(
    server: &PrivateKey,
    door: &str,
    door_open: &[Service],
    clients: &[Client],
) -> Result<(SpaPrecheck, SpaDecode), UnusableKey> {
    let mut keys: Vec<syn::SynKey> = Vec::new();
    let mut who: Vec<Enrolled> = Vec::new();
    let mut last = None;
    for (c, e) in enrolled(clients, door, door_open) {
        let key = server.syn_key(&c.public_key).map_err(|e| UnusableKey {
            client: c.name.clone(),
            line: c.line,
            why: e.to_string(),
        })?;
        keys.push(key);
        who.push(e);
        last = Some(c);
    }
    let table = syn::HintTable::new(keys, SYN_SKEW_STEPS).map_err(|e| {
        let (client, line) = last.map(|c| (c.name.clone(), c.line)).unwrap_or_default();
        UnusableKey {
            client,
            line,
            why: e.to_string(),
        }
    })?;
    // The table computes the next step's hints when the step changes: the decoder needs it
    // mutable. The engine calls it from one thread, so the lock is never contended; a panic
    // cannot leave a half-made step behind (each is made whole, then put in), so a poisoned
    // lock is taken over as it is.
    let table = Mutex::new(table);
    let slots: Vec<Service> = door_open.to_vec();
    let precheck: SpaPrecheck = Arc::new(|l3: &[u8]| syn::parse(l3).is_some());
    let decode: SpaDecode = Arc::new(move |l3: &[u8], wall: u64| {
        let seen = syn::parse(l3).ok_or(SpaError::NotForThisKey)?;
        let found = table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .find(syn::step(wall), &seen);
        let Some(syn::Found { client, slot, .. }) = found else {
            return Err(SpaError::NotForThisKey);
        };
        let who = who.get(client).ok_or(SpaError::NotForThisKey)?;
        let Some(service) = slots.get(usize::from(slot)) else {
            return Err(SpaError::Unsupported(format!(
                "client {:?} asked for slot {slot}, but the door opens only {} service(s): its profile is out of date",
                who.name,
                slots.len()
            )));
        };
        // the authenticator covers the source address: the grant is for it alone
        request(
            who,
            wall,
            Some(seen.src),
            vec![*service],
            None,
            syn::replay_id(&seen),
        )
    });
    Ok((precheck, decode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting(start: u8) -> PrivateKey {
        PrivateKey::from_bytes(core::array::from_fn(|i| start.wrapping_add(i as u8)))
    }

    fn client(name: &str, key: &PrivateKey, doors: Option<&[&str]>) -> Client {
        Client {
            name: name.into(),
            public_key: key.public_key(),
            doors: doors.map(|d| d.iter().map(|s| s.to_string()).collect()),
            open: None,
            open_for: None,
            line: 1,
        }
    }

    fn request() -> spa::Request {
        spa::Request {
            timestamp: 1_700_000_000,
            nonce: [7; 16],
            allow: None,
            services: vec![Service::tcp(22)],
            duration: None,
        }
    }

    /// Alice's request in version 1 of the format (prologue `knocker spa v1`, no door), tagged
    /// for door "ssh" of the server `counting(0x40)`, from the client `counting(0)`: made
    /// independently (Python, `cryptography`, Noise written out from its specification; the
    /// ephemeral key is bytes 0x60, 0x61, ...), as an older knocker sealed it.
    const ALICE_V1: &str = concat!(
        "007f694e7b24dcd7236af9e89bd01cc1675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958",
        "371ea5afdfd459c94b35c1cf199a245978e1a7d91ca3a3deb84746b9ab72a8db5c121d79e015e1024d41a94c",
        "d3df7e5c4e09d031862552ee956b5ac66b961ea1cdea86ffa9c7ae70d1008ac3803cd03083f6ec3cedeb8cb5",
        "ae8402dee3117358a8563859b175d87817ffec911044fdc7644a84d65d8cfd74e1d5a7073668e59cb76f9ebe",
        "c596fa1194a4e743ee2374a93ce7a35058b4cd3ad892a6b2ef2c45f6412cfb17814196094097a10eece9419e",
        "f669c40b0eb2d3b827d20193877cb41d229d836893b6b37054952f1386f7bd59ed305087"
    );

    #[test]
    fn a_datagram_opens_only_its_own_door_and_other_doors_clients_are_named() {
        let server = Arc::new(counting(0x40));
        let alice = counting(0);
        let dave = PrivateKey::generate().expect("rng");
        let clients = [
            client("alice", &alice, None),
            client("dave", &dave, Some(&["ssh"])),
        ];
        let open = [Service::tcp(22)];
        let (pre_a, door_a) = spa_decoder(&server, "ssh", &open, &clients).expect("decoder");
        let (pre_b, door_b) = spa_decoder(&server, "web", &open, &clients).expect("decoder");
        let seal = |who: &PrivateKey, door: &str| {
            spa::seal(
                &request(),
                who,
                &server.public_key(),
                &server.door_key(door),
            )
            .expect("seal")
        };

        // alice's datagram for door "ssh", re-tagged by an insider holding door "web"'s key
        let d = seal(&alice, "ssh");
        let mut moved = d.clone();
        spa::write_tag(&server.door_key("web"), &mut moved);
        assert!(pre_b(&moved), "the tag passes");
        assert_eq!(door_b(&moved, 0), Err(SpaError::NotForThisKey));
        assert!(pre_a(&d));
        assert_eq!(door_a(&d, 0).map(|r| r.username), Ok("alice".to_string()));

        // dave is enrolled for "ssh" only; a stranger for nothing
        let refused = door_b(&seal(&dave, "web"), 0);
        assert_eq!(
            refused,
            Err(SpaError::Refused(Refusal::NotEnrolledHere {
                client: "dave".into()
            }))
        );
        if let Err(SpaError::Refused(why)) = refused {
            assert_eq!(
                why.to_string(),
                "client \"dave\" is not enrolled for this door (its `doors` in the clients file \
                 do not list it)"
            );
        }
        let stranger = PrivateKey::generate().expect("rng");
        assert_eq!(
            door_b(&seal(&stranger, "web"), 0),
            Err(SpaError::Refused(Refusal::UnknownKey))
        );

        // an older client's datagram: refused, saying whose and what to do
        let v1: Vec<u8> = (0..ALICE_V1.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&ALICE_V1[i..i + 2], 16).expect("hex"))
            .collect();
        assert!(pre_a(&v1));
        assert_eq!(
            door_a(&v1, 0),
            Err(SpaError::Unsupported(
                "client \"alice\": sealed by an older knocker client, in a format that does not \
                 bind the request to its door: upgrade knocker on the client (its profile stays \
                 valid)"
                    .into()
            ))
        );
    }

    /// Each load makes the door's receiver, and its table of `ss`, from the clients enrolled
    /// then: a client enrolled by a reload opens, one revoked by the next is refused.
    #[test]
    fn each_load_makes_its_table_from_the_clients_enrolled_then() {
        let server = counting(0x40);
        let alice = counting(0);
        let open = [Service::tcp(22)];
        let d = spa::seal(
            &request(),
            &alice,
            &server.public_key(),
            &server.door_key("ssh"),
        )
        .expect("seal");
        let enrolled = [client("alice", &alice, None)];
        for (clients, want) in [
            (&[][..], Err(SpaError::Refused(Refusal::UnknownKey))),
            (&enrolled[..], Ok("alice".to_string())),
            (&[][..], Err(SpaError::Refused(Refusal::UnknownKey))),
        ] {
            let (pre, door) = spa_decoder(&server, "ssh", &open, clients).expect("decoder");
            assert!(pre(&d));
            assert_eq!(door(&d, 0).map(|r| r.username), want);
        }
    }

    /// A SYN names its sender among many clients (found through the hint table, in each
    /// accepted step as the wall clock moves on), asks for the service its slot names, and
    /// opens nothing for a client enrolled for other doors only or for a slot past the door's.
    #[test]
    fn a_syn_names_its_sender_among_many_clients() {
        let server = counting(0x40);
        let keys: Vec<PrivateKey> = (0..50).map(|i| counting(i * 3)).collect();
        let mut clients: Vec<Client> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| client(&format!("c{i}"), k, None))
            .collect();
        clients[7].doors = Some(vec!["web".into()]);
        let open = [Service::tcp(22), Service::tcp(443)];
        let (precheck, decode) = syn_decoder(&server, "ssh", &open, &clients).expect("decoder");
        let src: IpAddr = "192.0.2.9".parse().expect("addr");
        let dst: IpAddr = "198.51.100.1".parse().expect("addr");
        let wall = 1_700_000_000;
        let knock = |who: usize, step: u64, slot: u8| {
            let key = keys[who].syn_key(&server.public_key()).expect("syn key");
            let (port, m) = syn::choose(&key, step, src, dst, 4443, slot).expect("choose");
            syn::build(src, dst, port, 4443, &m, &syn::linux_shape(false, 1500))
        };
        for (who, slot, at) in [(0, 0, wall), (31, 1, wall + 30), (49, 1, wall + 95)] {
            let packet = knock(who, syn::step(wall), slot);
            assert!(precheck(&packet));
            let got = decode(&packet, at);
            if at - wall >= 60 {
                // two steps on: outside the window
                assert_eq!(got, Err(SpaError::NotForThisKey));
                continue;
            }
            let req = got.expect("granted");
            assert_eq!(req.username, format!("c{who}"));
            assert_eq!(req.access, vec![open[usize::from(slot)]]);
            assert_eq!(req.allow, src);
        }
        // enrolled for "web" only: not tried here
        assert_eq!(
            decode(&knock(7, syn::step(wall), 0), wall),
            Err(SpaError::NotForThisKey)
        );
        match decode(&knock(3, syn::step(wall), 5), wall) {
            Err(SpaError::Unsupported(why)) => {
                assert!(why.contains("\"c3\" asked for slot 5"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }
}
