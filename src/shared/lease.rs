//! Cross-host single flight: the first host to miss a URL takes its lease
//! (`SET NX PX`, a token of its own) and fetches it from the origin; the
//! others wait for the record it publishes, and fill from the fleet. The
//! leader renews the lease while it holds it; publication checks the token
//! inside Redis, so an ex-leader whose lease expired and was taken over
//! can never publish over the new leader. A leader that dies lets its
//! lease expire, and a waiting host takes over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Fleet, Kind};

/// How long a lease lives without renewal: a dead leader's followers take
/// over after at most this long.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often a leader renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(3);
/// How often a follower looks for the leader's record.
pub const WAIT_POLL: Duration = Duration::from_millis(50);

/// Renews the lease if it still holds this token.
pub const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// Drops the lease if it still holds this token.
pub const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Writes a body's manifest and its URL's record, unless another host
/// holds the URL's lease (KEYS: record, lease, manifest, fill stream;
/// ARGV: record, manifest, or empty to keep the one there (a refresh after
/// a 304), the token, or empty for a host that holds none, the `done`
/// entry for the fill stream, or empty, and the stream's lifetime in ms).
/// The lease is released with it.
pub const PUBLISH: &str = r"
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[3] then
  return 0
end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[3], ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[4] ~= '' then
  redis.call('XADD', KEYS[4], '*', 'e', ARGV[4])
  redis.call('PEXPIRE', KEYS[4], ARGV[5])
end
if holder then
  redis.call('DEL', KEYS[2])
end
return 1";

/// Whose turn it is to fetch a URL from its origin.
pub enum Turn {
    /// This host's: it holds the lease.
    Lead(Lease),
    /// Another host is fetching it: wait for its record.
    Follow,
    /// The fleet cannot say (down, or a read-only user): fetch it.
    Alone,
}

/// A lease this host holds; released when dropped (unless published).
pub struct Lease {
    fleet: Weak<Fleet>,
    pub(super) key: String,
    pub(super) token: String,
    held: Arc<AtomicBool>,
}

impl Lease {
    /// Takes the lease of `key` if nobody holds it.
    pub(super) async fn take(fleet: &Arc<Fleet>, key: String) -> Turn {
        let token = super::host_id();
        let (asked_key, asked_token) = (key.clone(), token.clone());
        let taken = fleet
            .call(Kind::Control, |mut control| async move {
                redis::cmd("SET")
                    .arg(&asked_key)
                    .arg(&asked_token)
                    .arg("NX")
                    .arg("PX")
                    .arg(LEASE_TTL.as_millis() as u64)
                    .query_async::<Option<String>>(&mut control)
                    .await
            })
            .await;
        match taken {
            Ok(Some(_)) => {}
            Ok(None) => return Turn::Follow,
            Err(_) => return Turn::Alone,
        }
        let lease = Lease {
            fleet: Arc::downgrade(fleet),
            key,
            token,
            held: Arc::new(AtomicBool::new(true)),
        };
        lease.renew_while_held();
        Turn::Lead(lease)
    }

    /// The lease was consumed by a publication: nothing to release.
    pub(super) fn published(&self) {
        self.held.store(false, Ordering::Relaxed);
    }

    fn renew_while_held(&self) {
        let (fleet, held) = (self.fleet.clone(), Arc::clone(&self.held));
        let (key, token) = (self.key.clone(), self.token.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let Some(fleet) = fleet.upgrade() else { return };
                if !held.load(Ordering::Relaxed) {
                    return;
                }
                let (key, token) = (key.clone(), token.clone());
                let renewed = fleet
                    .call(Kind::Control, |mut control| async move {
                        redis::Script::new(RENEW)
                            .key(&key)
                            .arg(&token)
                            .arg(LEASE_TTL.as_millis() as u64)
                            .invoke_async::<i64>(&mut control)
                            .await
                    })
                    .await;
                if !matches!(renewed, Ok(1)) {
                    // Lost (expired and taken, or Redis away): the
                    // publication's token check decides.
                    return;
                }
            }
        });
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.held.swap(false, Ordering::Relaxed) {
            return;
        }
        let Some(fleet) = self.fleet.upgrade() else {
            return;
        };
        let (key, token) = (self.key.clone(), self.token.clone());
        // Dropped on a runtime thread (a download's task, a lookup).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = fleet
                    .call(Kind::Control, |mut control| async move {
                        redis::Script::new(RELEASE)
                            .key(&key)
                            .arg(&token)
                            .invoke_async::<i64>(&mut control)
                            .await
                    })
                    .await;
            });
        }
    }
}
