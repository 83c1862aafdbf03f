//! The server's end of a door: what [`super::open`] needs, made once per door and configuration
//! rather than once per datagram, so that a valid datagram costs one X25519 operation.
//!
//! Noise X's responder computes two key agreements with its static key, `es` with the
//! datagram's ephemeral key and `ss` with the client's static key. `ss` depends on the server's
//! key and the client's only, so [`Receiver::new`] computes it once for every enrolled client and
//! a snow [`Dh`] answers from that table; anything else (`es`, a key that is not enrolled) is
//! computed, with AWS-LC's X25519. The table holds what the server's private key gives anyone
//! who holds it, so it is kept like the key: in memory that is wiped on drop, never logged.
//! SECURITY.md has the reasoning, including what the time a lookup takes can tell.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::agreement;
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::identity::{DoorKey, PrivateKey, PublicKey};
use crate::key::KEY_LEN;

/// Why a [`Receiver`] could not be made: AWS-LC refused the server's key, which it does not do
/// for any 32 bytes (X25519 clamps them); kept as an error rather than a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server's key could not be loaded for X25519")]
pub struct ReceiverError;

/// Opens the datagrams of one door ([`Receiver::open`]: the same results as [`super::open`]),
/// with `ss` computed in advance for the clients it was made with.
pub struct Receiver {
    params: NoiseParams,
    prologue: [u8; super::PROLOGUE_LEN],
    keys: Arc<ServerKeys>,
}

/// The server's key in the forms the handshake needs, and `ss` per enrolled client.
struct ServerKeys {
    /// What snow is given as the local private key; [`ServerDh::set`] checks it is this one.
    secret: Zeroizing<[u8; KEY_LEN]>,
    public: [u8; KEY_LEN],
    /// The same key, for AWS-LC (which wipes it when it is freed).
    agreement: agreement::PrivateKey,
    /// X25519(server, client) per enrolled client's public key (low-order keys left out: they
    /// are refused after the handshake). Made at its final size, so no copy is left behind by
    /// a growing table; the secrets are wiped on drop.
    shared: HashMap<[u8; KEY_LEN], Zeroizing<[u8; KEY_LEN]>>,
}

impl ServerKeys {
    /// X25519 as RFC 7748 defines it, all zeros for a low-order `peer` included (AWS-LC refuses
    /// that output; snow, and this file's callers, expect it and refuse the key themselves).
    /// `None` only if AWS-LC failed otherwise.
    fn x25519(&self, peer: &[u8; KEY_LEN]) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        let peer_key = agreement::UnparsedPublicKey::new(&agreement::X25519, peer);
        let agreed = agreement::agree(&self.agreement, peer_key, (), |shared| {
            if shared.len() != KEY_LEN {
                return Err(());
            }
            out.copy_from_slice(shared);
            Ok(())
        });
        match agreed {
            Ok(()) => Some(out),
            Err(()) if PublicKey(*peer).is_low_order() => Some(out),
            Err(()) => None,
        }
    }
}

impl Receiver {
    /// A receiver for the door whose tag key is `door`, with `ss` computed for `clients` (the
    /// public keys enrolled for the door; any other key still opens, at the cost of one more
    /// X25519): 64 bytes per client, and the hash table's spare room.
    pub fn new<'a>(
        server: &PrivateKey,
        door: &DoorKey,
        clients: impl IntoIterator<Item = &'a PublicKey>,
    ) -> Result<Receiver, ReceiverError> {
        let params: NoiseParams = super::NOISE_PARAMS.parse().map_err(|_| ReceiverError)?;
        let agreement = agreement::PrivateKey::from_private_key(&agreement::X25519, server.bytes())
            .map_err(|_| ReceiverError)?;
        let public = agreement
            .compute_public_key()
            .ok()
            .and_then(|p| <[u8; KEY_LEN]>::try_from(p.as_ref()).ok())
            .ok_or(ReceiverError)?;
        let mut keys = ServerKeys {
            secret: Zeroizing::new(*server.bytes()),
            public,
            agreement,
            shared: HashMap::new(),
        };
        let clients: Vec<&PublicKey> = clients.into_iter().filter(|c| !c.is_low_order()).collect();
        let mut shared = HashMap::with_capacity(clients.len());
        for client in clients {
            if let Some(ss) = keys.x25519(&client.0) {
                shared.insert(client.0, ss);
            }
        }
        keys.shared = shared;
        Ok(Receiver {
            params,
            prologue: super::prologue(door),
            keys: Arc::new(keys),
        })
    }

    /// How many clients have `ss` computed in advance.
    pub fn enrolled(&self) -> usize {
        self.keys.shared.len()
    }

    /// [`super::open`] for this door and server key.
    pub fn open(&self, datagram: &[u8]) -> Result<(PublicKey, super::Request), super::OpenError> {
        super::open_both(datagram, &self.prologue, &|message, prologue, plaintext| {
            self.read(message, prologue, plaintext)
        })
    }

    /// Noise X's responder reading `message` with `prologue` into `plaintext`: the plaintext's
    /// length and the client's static key, `None` if it does not decrypt.
    fn read(
        &self,
        message: &[u8],
        prologue: &[u8],
        plaintext: &mut [u8],
    ) -> Option<(usize, PublicKey)> {
        let resolver = Box::new(Resolver(Arc::clone(&self.keys)));
        let mut handshake = snow::Builder::with_resolver(self.params.clone(), resolver)
            .local_private_key(&self.keys.secret[..])
            .and_then(|b| b.prologue(prologue))
            .and_then(|b| b.build_responder())
            .ok()?;
        let n = handshake.read_message(message, plaintext).ok()?;
        let client = handshake
            .get_remote_static()
            .and_then(|s| <[u8; KEY_LEN]>::try_from(s).ok())
            .map(PublicKey)?;
        Some((n, client))
    }
}

/// snow's primitives, with [`ServerDh`] for X25519.
struct Resolver(Arc<ServerKeys>);

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        DefaultResolver.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(ServerDh {
                keys: Arc::clone(&self.0),
                armed: false,
            })),
            _ => None,
        }
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// The server's static key as snow's [`Dh`]: answers `ss` for an enrolled client from the table,
/// computes everything else.
struct ServerDh {
    keys: Arc<ServerKeys>,
    /// Whether snow set the server's own key ([`Dh::set`]): until then, or with any other key,
    /// it agrees nothing. snow also makes one for the ephemeral key, which Noise X's responder
    /// never has.
    armed: bool,
}

impl Dh for ServerDh {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        KEY_LEN
    }

    fn priv_len(&self) -> usize {
        KEY_LEN
    }

    fn set(&mut self, privkey: &[u8]) {
        self.armed = privkey.len() == KEY_LEN && bool::from(privkey.ct_eq(&self.keys.secret[..]));
    }

    fn generate(&mut self, _rng: &mut dyn Random) -> Result<(), snow::Error> {
        // the responder of a one-message pattern makes no key
        Err(snow::Error::Dh)
    }

    fn pubkey(&self) -> &[u8] {
        &self.keys.public
    }

    fn privkey(&self) -> &[u8] {
        &self.keys.secret[..]
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        if !self.armed {
            return Err(snow::Error::Dh);
        }
        let peer = pubkey
            .get(..KEY_LEN)
            .and_then(|p| <&[u8; KEY_LEN]>::try_from(p).ok())
            .ok_or(snow::Error::Dh)?;
        let out = out.get_mut(..KEY_LEN).ok_or(snow::Error::Dh)?;
        match self.keys.shared.get(peer) {
            Some(ss) => out.copy_from_slice(&ss[..]),
            None => out.copy_from_slice(&self.keys.x25519(peer).ok_or(snow::Error::Dh)?[..]),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting(start: u8) -> PrivateKey {
        PrivateKey::from_bytes(core::array::from_fn(|i| start.wrapping_add(i as u8)))
    }

    /// xorshift64*: reproducible keys without another dependency.
    fn keys_from(mut seed: u64, n: usize) -> Vec<[u8; KEY_LEN]> {
        (0..n)
            .map(|_| {
                core::array::from_fn(|_| {
                    seed ^= seed >> 12;
                    seed ^= seed << 25;
                    seed ^= seed >> 27;
                    (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
                })
            })
            .collect()
    }

    fn server_dh(receiver: &Receiver) -> ServerDh {
        let mut dh = ServerDh {
            keys: Arc::clone(&receiver.keys),
            armed: false,
        };
        dh.set(&receiver.keys.secret[..]);
        dh
    }

    #[test]
    fn aws_lc_agrees_with_dalek_on_every_kind_of_input() {
        let server = counting(0x40);
        let r = Receiver::new(&server, &server.door_key("ssh"), []).expect("receiver");
        assert_eq!(r.keys.public, server.public_key().0);
        // random strings: points on the curve and on its twist, top bit set or not, and the
        // non-canonical encodings just above p
        let mut inputs = keys_from(0x9e37_79b9_7f4a_7c15, 64);
        for above in 0..=18u8 {
            // p + above, p = 2^255 - 19
            let mut k = [0xff; KEY_LEN];
            k[0] = 0xed + above;
            k[KEY_LEN - 1] = 0x7f;
            inputs.push(k);
            k[KEY_LEN - 1] = 0xff;
            inputs.push(k);
        }
        for peer in inputs {
            let dalek = x25519_dalek::x25519(*server.bytes(), peer);
            assert_eq!(r.keys.x25519(&peer).map(|k| *k), Some(dalek), "{peer:02x?}");
        }
    }

    #[test]
    fn low_order_keys_agree_to_zeros_and_are_not_kept() {
        let server = counting(0x40);
        let door = server.door_key("ssh");
        let honest = counting(0);
        let low: Vec<PublicKey> = super::super::tests::low_order_keys();
        let mut enrolled = low.clone();
        enrolled.push(honest.public_key());
        let r = Receiver::new(&server, &door, &enrolled).expect("receiver");
        assert_eq!(r.enrolled(), 1);
        let dh = server_dh(&r);
        for key in &low {
            let mut out = [1u8; KEY_LEN];
            dh.dh(&key.0, &mut out).expect("dh");
            assert_eq!(out, [0; KEY_LEN], "{key}");
        }
    }

    #[test]
    fn ss_comes_from_the_table_for_enrolled_keys_only() {
        let server = counting(0x40);
        let door = server.door_key("ssh");
        let alice = counting(0).public_key();
        let bob = counting(0x80).public_key();
        let r = Receiver::new(&server, &door, [&alice]).expect("receiver");
        assert_eq!(r.enrolled(), 1);
        let dh = server_dh(&r);
        let mut out = [0u8; KEY_LEN];
        for peer in [&alice, &bob] {
            dh.dh(&peer.0, &mut out).expect("dh");
            assert_eq!(out, x25519_dalek::x25519(*server.bytes(), peer.0));
        }
        // The table is what answers for alice: a wrong entry would be used as it is (so a
        // table made with the wrong key could not go unnoticed by the handshake either).
        let mut keys = ServerKeys {
            secret: Zeroizing::new(*server.bytes()),
            public: r.keys.public,
            agreement: agreement::PrivateKey::from_private_key(&agreement::X25519, server.bytes())
                .expect("key"),
            shared: HashMap::new(),
        };
        keys.shared.insert(alice.0, Zeroizing::new([7; KEY_LEN]));
        let mut planted = ServerDh {
            keys: Arc::new(keys),
            armed: false,
        };
        planted.set(server.bytes());
        planted.dh(&alice.0, &mut out).expect("dh");
        assert_eq!(out, [7; KEY_LEN]);
        planted.dh(&bob.0, &mut out).expect("dh");
        assert_eq!(out, x25519_dalek::x25519(*server.bytes(), bob.0));
    }

    #[test]
    fn the_dh_agrees_only_with_the_servers_own_key_set() {
        let server = counting(0x40);
        let r = Receiver::new(&server, &server.door_key("ssh"), []).expect("receiver");
        let mut dh = ServerDh {
            keys: Arc::clone(&r.keys),
            armed: false,
        };
        let peer = counting(0).public_key();
        let mut out = [0u8; KEY_LEN];
        assert_eq!(dh.dh(&peer.0, &mut out), Err(snow::Error::Dh));
        dh.set(counting(0x41).bytes());
        assert_eq!(dh.dh(&peer.0, &mut out), Err(snow::Error::Dh));
        dh.set(server.bytes());
        assert_eq!(dh.dh(&peer.0, &mut out), Ok(()));
        assert_eq!(dh.dh(&peer.0[..31], &mut out), Err(snow::Error::Dh));
        assert_eq!(dh.dh(&peer.0, &mut out[..31]), Err(snow::Error::Dh));
    }
}
