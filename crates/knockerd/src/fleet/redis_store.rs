//! The [`Store`] on Redis (or Valkey): one Lua script makes a knock's claims all together or
//! none, digests with `SET key 1 NX PX <age window>`, counters and steps only forward.

use std::time::{Duration, Instant};

use redis::{ConnectionAddr, ConnectionInfo, ConnectionLike, ProtocolVersion, RedisConnectionInfo};

use super::{
    Claim, Claimed, SharedState, Store, StoreError, CLAIM_TIMEOUT, CONNECT_TIMEOUT, RETRY_AFTER,
};

/// Checks every claim first, then makes them all: a script runs atomically in Redis, so no other
/// host's claim comes between. Returns 0 when all were made, else the (1-based) index of the
/// first one already made. ARGV holds two values a key: its kind (`d` a digest, `f` a forward
/// counter, `o` a once-only line) and its value (a digest's time to live in ms, 0 for ever; a
/// counter's value as 20 digits, compared as two exact halves, since Lua's numbers are
/// doubles).
pub const CLAIM_SCRIPT: &str = r"
local function newer(cur, v)
  local ch, cl = tonumber(string.sub(cur, 1, 10)), tonumber(string.sub(cur, 11, 20))
  local vh, vl = tonumber(string.sub(v, 1, 10)), tonumber(string.sub(v, 11, 20))
  if ch == nil or cl == nil or string.len(cur) ~= 20 then return true end
  return vh > ch or (vh == ch and vl > cl)
end
for i = 1, #KEYS do
  local kind, v = ARGV[2 * i - 1], ARGV[2 * i]
  if kind == 'f' then
    local cur = redis.call('GET', KEYS[i])
    if cur and not newer(cur, v) then return i end
  elseif redis.call('EXISTS', KEYS[i]) == 1 then
    return i
  end
end
for i = 1, #KEYS do
  local kind, v = ARGV[2 * i - 1], ARGV[2 * i]
  if kind == 'f' then
    redis.call('SET', KEYS[i], v)
  elseif kind == 'd' and v ~= '0' then
    redis.call('SET', KEYS[i], '1', 'NX', 'PX', v)
  else
    redis.call('SET', KEYS[i], '1', 'NX')
  end
end
return 0
";

/// The script's two arguments for a claim, at `now_unix`: `None` for a digest whose time is up
/// already (nothing to remember).
pub fn script_args(claim: &Claim, now_unix: u64) -> Option<(&'static str, String)> {
    Some(match claim {
        Claim::Digest { until_unix, .. } if *until_unix == u64::MAX => ("d", "0".to_string()),
        Claim::Digest { until_unix, .. } => {
            // remembered one second past its end, as the engine's `until >= wall` does
            let secs = until_unix.checked_sub(now_unix)?.saturating_add(1);
            ("d", secs.saturating_mul(1000).to_string())
        }
        Claim::Forward { value, .. } => ("f", format!("{value:020}")),
        Claim::Once { .. } => ("o", "1".to_string()),
    })
}

/// A connection to the store, made again when it broke, left alone for [`RETRY_AFTER`] after
/// a failure (a circuit breaker: a store that is down costs one timeout a second, not one a
/// knock).
pub struct RedisStore {
    client: redis::Client,
    conn: Option<redis::Connection>,
    script: redis::Script,
    /// When the last failure was (None: not failing).
    failed_at: Option<Instant>,
    timeout: Duration,
}

impl RedisStore {
    /// A store for `shared`; nothing is connected until the first claim.
    pub fn new(shared: &SharedState) -> Result<RedisStore, StoreError> {
        let addr = if shared.tls {
            ConnectionAddr::TcpTls {
                host: shared.host.clone(),
                port: shared.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(shared.host.clone(), shared.port)
        };
        let info = ConnectionInfo {
            addr,
            redis: RedisConnectionInfo {
                db: shared.db,
                username: shared.username.clone(),
                password: shared.password().map(str::to_string),
                protocol: ProtocolVersion::RESP2,
            },
        };
        if shared.tls {
            // rustls is built with one provider, AWS-LC (already in the tree for X25519):
            // make it the process's (an Err only says one is installed already)
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let client = match (&shared.ca_pem, shared.tls) {
            (Some(pem), true) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            _ => redis::Client::open(info),
        }
        .map_err(|e| StoreError::Connect(e.to_string()))?;
        Ok(RedisStore {
            client,
            conn: None,
            script: redis::Script::new(CLAIM_SCRIPT),
            failed_at: None,
            timeout: CLAIM_TIMEOUT,
        })
    }

    fn connect_in<'c>(
        client: &redis::Client,
        conn: &'c mut Option<redis::Connection>,
        timeout: Duration,
    ) -> Result<&'c mut redis::Connection, StoreError> {
        if conn.as_ref().is_some_and(|c| c.is_open()) {
            return Ok(conn.as_mut().expect("just checked"));
        }
        *conn = None;
        let started = Instant::now();
        let c = client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(|e| StoreError::Connect(describe(&e)))?;
        c.set_read_timeout(Some(timeout))
            .and_then(|()| c.set_write_timeout(Some(timeout)))
            .map_err(|e| StoreError::Connect(describe(&e)))?;
        tracing::debug!(
            "shared store: connected in {} ms",
            started.elapsed().as_millis()
        );
        Ok(conn.insert(c))
    }

    fn run(&mut self, claims: &[Claim]) -> Result<Claimed, StoreError> {
        let now = crate::ledger::unix_now();
        let mut invocation = self.script.prepare_invoke();
        let mut index = Vec::with_capacity(claims.len());
        for (i, c) in claims.iter().enumerate() {
            let Some((kind, value)) = script_args(c, now) else {
                continue;
            };
            invocation.key(c.key()).arg(kind).arg(value);
            index.push(i);
        }
        if index.is_empty() {
            return Ok(Claimed::Yes);
        }
        let conn = Self::connect_in(&self.client, &mut self.conn, self.timeout)?;
        let taken: i64 = invocation.invoke(conn).map_err(|e| {
            if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                StoreError::Io(describe(&e))
            } else {
                StoreError::Refused(describe(&e))
            }
        })?;
        match usize::try_from(taken) {
            Ok(0) => Ok(Claimed::Yes),
            Ok(n) => Ok(Claimed::Taken(index.get(n - 1).copied().unwrap_or(0))),
            Err(_) => Err(StoreError::Refused(format!(
                "the claim script returned {taken}"
            ))),
        }
    }
}

impl Store for RedisStore {
    fn claim(&mut self, claims: &[Claim]) -> Result<Claimed, StoreError> {
        if let Some(at) = self.failed_at {
            let since = at.elapsed();
            if since < RETRY_AFTER {
                return Err(StoreError::Down(since.as_millis()));
            }
        }
        // A connection that was open may have broken since (the store restarted, a failover):
        // one more try on a new connection, so that a restart costs no knock.
        let had = self.conn.is_some();
        let mut result = self.run(claims);
        if had && matches!(result, Err(StoreError::Io(_))) {
            self.conn = None;
            result = self.run(claims);
        }
        match &result {
            Err(_) => {
                self.conn = None;
                self.failed_at = Some(Instant::now());
            }
            Ok(_) => self.failed_at = None,
        }
        result
    }
}

/// A Redis error as the log says it: its own words, with a hint where the unit's sandbox is
/// the likely cause. Redis never echoes a password in its errors.
fn describe(e: &redis::RedisError) -> String {
    let text = e.to_string();
    if text.contains("Operation not permitted") || text.contains("os error 1)") {
        return format!(
            "{text} (knockerd.service has IPAddressDeny=any: allow the store's address with IPAddressAllow= in a drop-in)"
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_lives_until_its_age_window_ends_and_counters_are_exact_digits() {
        let d = |until_unix| Claim::Digest {
            door: "d".into(),
            digest: [1; 32],
            until_unix,
        };
        assert_eq!(script_args(&d(160), 100), Some(("d", "61000".into())));
        assert_eq!(script_args(&d(u64::MAX), 100), Some(("d", "0".into())));
        assert_eq!(script_args(&d(99), 100), None, "already past its window");
        let f = Claim::Forward {
            door: "d".into(),
            what: "hotp",
            value: u64::MAX,
        };
        assert_eq!(
            script_args(&f, 0),
            Some(("f", "18446744073709551615".into()))
        );
        assert_eq!(script_args(&f, 0).map(|(_, v)| v.len()), Some(20));
    }
}
