//! The fleet tier: mounts that name one Redis (`[shared]`) share bodies, so
//! the fleet fetches each from its origin once; Redis only ever saves
//! requests, never changes a byte, and its failures cost nothing but the
//! origin requests it would have saved.

use std::time::Duration;

use crate::common::*;

/// Two chunks and a bit (a chunk is 4 MiB − 4 KiB).
const SIZE: usize = 9 * 1024 * 1024;

/// A mount of origin `o` (`/base`) sharing through `redis`.
fn host(origin: &Origin, redis: &Redis) -> Mount {
    Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .config("shared", &redis.shared_config())
        .mount()
}

/// Reads `path` on `mount` and waits until the body is published.
fn read_and_publish(mount: &Mount, path: &str) -> Vec<u8> {
    let body = read(&mount.path(path));
    assert!(
        eventually(Duration::from_secs(10), || mount.stat("shared_publishes")
            >= 1),
        "nothing published; stderr:\n{}",
        mount.stderr()
    );
    body
}

#[test]
fn a_body_one_host_fetched_comes_to_another_from_the_fleet() {
    let body = random_bytes(SIZE, 11);
    let origin = Origin::start();
    origin.route("/base/model.bin", Route::fresh(body.clone()));
    let redis = Redis::start();
    let a = host(&origin, &redis);
    let b = host(&origin, &redis);

    assert_eq!(read_and_publish(&a, "o/model.bin"), body);
    let asked_by_a = origin.requests_to("/base/model.bin").len();

    assert_eq!(read(&b.path("o/model.bin")), body);
    assert_eq!(
        origin.requests_to("/base/model.bin").len(),
        asked_by_a,
        "B asked the origin: {}",
        origin.describe_requests()
    );
    assert_eq!(origin.gets("/base/model.bin"), 1, "one GET for the fleet");
    assert_eq!(b.stat("shared_hits"), 1);
    assert_eq!(b.stat("bytes_from_shared"), SIZE as u64);
    assert_eq!(b.stat("bytes_from_origin"), 0);
    assert_eq!(b.stat("shared_up"), 1);
    // Stored on B: the next read is a local hit.
    assert_eq!(read(&b.path("o/model.bin")), body);
    assert_eq!(b.stat("shared_hits"), 1);
}

#[test]
fn private_and_credentialed_responses_are_never_published() {
    let origin = Origin::start();
    origin.route(
        "/base/mine.txt",
        Route::ok(b"private".to_vec()).header("Cache-Control", "private, max-age=3600"),
    );
    origin.route("/auth/token.txt", Route::fresh(b"credentialed".to_vec()));
    let redis = Redis::start();
    let mount = || {
        Mount::builder()
            .origin(OriginConfig::new("o", origin.url("/base")))
            .origin(
                OriginConfig::new("auth", origin.url("/auth"))
                    .header("Authorization", "Bearer s3cret"),
            )
            .config("shared", &redis.shared_config())
            .mount()
    };
    let (a, b) = (mount(), mount());
    for (path, served) in [
        ("o/mine.txt", "private"),
        ("auth/token.txt", "credentialed"),
    ] {
        assert_eq!(read(&a.path(path)), served.as_bytes());
        assert_eq!(read(&b.path(path)), served.as_bytes());
    }
    std::thread::sleep(Duration::from_millis(300));
    for kind in ["url", "obj", "chunk"] {
        let keys = redis.keys(&format!("fetchfs:v1:{kind}:*"));
        assert_eq!(keys, Vec::<String>::new(), "published");
    }
    assert_eq!(a.stat("shared_publishes") + b.stat("shared_publishes"), 0);
    assert_eq!(origin.gets("/base/mine.txt"), 2, "each host fetched it");
    assert_eq!(origin.gets("/auth/token.txt"), 2);
}

#[test]
fn a_damaged_chunk_is_dropped_and_the_body_comes_from_the_origin() {
    let body = random_bytes(SIZE, 12);
    let origin = Origin::start();
    origin.route("/base/data.bin", Route::fresh(body.clone()));
    let redis = Redis::start();
    let a = host(&origin, &redis);
    read_and_publish(&a, "o/data.bin");
    let chunks = redis.keys("fetchfs:v1:chunk:*");
    assert_eq!(chunks.len(), 3, "{chunks:?}");
    for chunk in &chunks {
        redis.cli(&["SETRANGE", chunk, "100", "garbage"]);
    }

    let b = host(&origin, &redis);
    assert_eq!(read(&b.path("o/data.bin")), body, "no wrong byte");
    assert_eq!(
        origin.gets("/base/data.bin"),
        2,
        "B fetched it from the origin"
    );
    assert_eq!(b.stat("shared_hits"), 0);
    // B published what it fetched, which healed the chunks.
    assert!(
        eventually(Duration::from_secs(10), || b.stat("shared_publishes") >= 1),
        "B did not publish"
    );
    let c = host(&origin, &redis);
    assert_eq!(read(&c.path("o/data.bin")), body);
    assert_eq!(c.stat("shared_hits"), 1);
    assert_eq!(origin.gets("/base/data.bin"), 2);
}

/// Redis down when the mounts start: they mount and read as usual; once
/// Redis is up, they use it again after the breaker's wait.
#[test]
fn redis_down_costs_nothing_and_comes_back() {
    let body = random_bytes(64 * 1024, 13);
    let origin = Origin::start();
    origin.route("/base/early.bin", Route::fresh(body.clone()));
    origin.route("/base/late.bin", Route::fresh(body.clone()));
    let port = redis::free_port();
    let shared = format!("{{ url = \"redis://127.0.0.1:{port}\" }}");
    let mount = || {
        Mount::builder()
            .origin(OriginConfig::new("o", origin.url("/base")))
            .config("shared", &shared)
            .mount()
    };
    let a = mount();
    let started = std::time::Instant::now();
    assert_eq!(read(&a.path("o/early.bin")), body);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a read with Redis down took {:?}",
        started.elapsed()
    );
    assert_eq!(a.stat("shared_up"), 0, "the breaker says Redis is down");

    let _redis = Redis::start_on(port);
    let b = mount();
    // The breaker waits about a second before it asks again.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        eventually(Duration::from_secs(31), || {
            let _ = std::fs::read(a.path("o/late.bin"));
            a.stat("shared_publishes") >= 1
        }),
        "the fleet tier was not used again; stderr:\n{}",
        a.stderr()
    );
    assert_eq!(read(&b.path("o/late.bin")), body);
    assert_eq!(b.stat("shared_hits"), 1);
    assert_eq!(origin.gets("/base/late.bin"), 1);
}

/// Redis killed: reads go on from the origin, with the right bytes and no
/// hang.
#[test]
fn redis_killed_leaves_reads_to_the_origin() {
    let body = random_bytes(SIZE, 14);
    let origin = Origin::start();
    origin.route("/base/a.bin", Route::fresh(body.clone()));
    let mut redis = Redis::start();
    let a = host(&origin, &redis);
    let b = host(&origin, &redis);
    read_and_publish(&a, "o/a.bin");
    redis.kill();
    let started = std::time::Instant::now();
    assert_eq!(read(&b.path("o/a.bin")), body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(origin.gets("/base/a.bin"), 2);
    assert!(b.stat("shared_errors") >= 1);
}

/// Hosts A and B of one fleet, both holding `o/v.txt` as "version 1"
/// (B from the fleet).
struct VersionedFleet {
    origin: Origin,
    redis: Redis,
    a: Mount,
    b: Mount,
}

impl VersionedFleet {
    fn start() -> VersionedFleet {
        let origin = Origin::start();
        origin.route("/base/v.txt", Route::fresh(b"version 1".to_vec()));
        let redis = Redis::start();
        let a = host(&origin, &redis);
        let b = host(&origin, &redis);
        assert_eq!(read_and_publish(&a, "o/v.txt"), b"version 1");
        assert_eq!(read(&b.path("o/v.txt")), b"version 1");
        VersionedFleet {
            origin,
            redis,
            a,
            b,
        }
    }

    /// The origin serves "version 2" from now on, and `host` invalidates
    /// the file.
    fn change_and_invalidate_on(&self, host: &Mount) {
        self.origin
            .route("/base/v.txt", Route::fresh(b"version 2".to_vec()));
        invalidate_on(host, "/o/v.txt");
    }
}

/// `fetchfs invalidate` of `pattern` on `host`.
fn invalidate_on(host: &Mount, pattern: &str) {
    let invalidated = run_fetchfs(
        &["invalidate", host.mountpoint().to_str().unwrap(), pattern],
        Duration::from_secs(10),
    );
    assert!(invalidated.status.success());
}

/// `invalidate` on one host reaches every host of the fleet within a
/// second: each revalidates, and the fleet's record of the URL is gone, so
/// no host refills the old body from it.
#[test]
fn an_invalidate_on_one_host_reaches_the_others_within_a_second() {
    let fleet = VersionedFleet::start();
    let VersionedFleet { redis, a, b, .. } = &fleet;
    assert_eq!(b.stat("shared_hits"), 1);

    fleet.change_and_invalidate_on(a);
    let told = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(1), || b.stat("fleet_commands_received")
            == 1),
        "B did not hear of it within a second; A sent {}",
        a.stat("fleet_commands_sent")
    );
    assert_eq!(read(&b.path("o/v.txt")), b"version 2");
    assert!(
        told.elapsed() < Duration::from_secs(2),
        "{:?}",
        told.elapsed()
    );
    assert_eq!(read(&a.path("o/v.txt")), b"version 2");
    assert_eq!(
        a.stat("fleet_commands_received"),
        0,
        "a host does not hear itself"
    );

    // And evict, the other way round.
    assert!(a.stat("entries") >= 1);
    let evicted = run_fetchfs(
        &["evict", b.mountpoint().to_str().unwrap(), "/o/**"],
        Duration::from_secs(10),
    );
    assert!(evicted.status.success());
    assert!(
        eventually(Duration::from_secs(1), || a.stat("entries") == 0),
        "A still holds {} entries",
        a.stat("entries")
    );
    assert_eq!(redis.keys("fetchfs:v1:url:*"), Vec::<String>::new());
}

/// F1: 32 readers, 16 on each of two hosts, open the same 256 MiB URL at
/// once: one host leads and fetches it from the origin, the other follows
/// its fetch through the fleet. One GET for the fleet, every byte right.
#[test]
fn readers_on_two_hosts_at_once_cause_one_origin_get() {
    const BIG: usize = 256 * 1024 * 1024;
    let body = random_bytes(BIG, 15);
    let want = sha256_hex(&body);
    let origin = Origin::start();
    // Slow enough that both hosts ask while the first fetch runs.
    origin.route(
        "/base/big.bin",
        Route::fresh(body).throttle(64 * 1024 * 1024),
    );
    let redis = Redis::start();
    let a = host(&origin, &redis);
    let b = host(&origin, &redis);
    let readers: Vec<_> = (0..16)
        .flat_map(|_| [a.path("o/big.bin"), b.path("o/big.bin")])
        .map(|path| std::thread::spawn(move || sha256_file(&path)))
        .collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap().unwrap(), want, "a wrong byte");
    }
    assert_eq!(
        origin.gets("/base/big.bin"),
        1,
        "{}",
        origin.describe_requests()
    );
    assert_eq!(a.stat("shared_hits") + b.stat("shared_hits"), 1);
    assert_eq!(a.stat("leases_led") + b.stat("leases_led"), 1);
    assert_eq!(a.stat("leases_followed") + b.stat("leases_followed"), 1);
    assert_eq!(
        a.stat("bytes_from_origin").min(b.stat("bytes_from_origin")),
        0,
        "one host had nothing from the origin"
    );
    assert_eq!(redis.keys("fetchfs:v1:lease:*"), Vec::<String>::new());
}

/// A leader that dies mid-fetch lets its lease expire; a waiting host
/// takes over and fetches the body itself.
#[test]
fn a_leader_killed_mid_fetch_is_taken_over() {
    let body = random_bytes(4 * 1024 * 1024, 16);
    let origin = Origin::start();
    origin.route(
        "/base/slow.bin",
        Route::fresh(body.clone()).throttle(256 * 1024),
    );
    let redis = Redis::start();
    let mut a = host(&origin, &redis);
    let b = host(&origin, &redis);
    let leader = read_in_background(&a, "o/slow.bin");
    wait_for_a_lease(&redis);
    let follower = read_in_background(&b, "o/slow.bin");
    std::thread::sleep(Duration::from_millis(500));
    a.stop_with(libc::SIGKILL);
    let _ = leader.join();
    let started = std::time::Instant::now();
    assert_eq!(follower.join().unwrap().unwrap(), body);
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(origin.gets("/base/slow.bin"), 2, "the leader's, then B's");
}

/// A mount of origin `o` sharing through `shared` (an inline TOML table).
fn host_with(origin: &Origin, shared: &str) -> Mount {
    Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .config("shared", shared)
        .mount()
}

#[test]
fn a_wrong_password_leaves_the_mount_local_only_with_one_line_in_the_log() {
    let origin = Origin::start();
    origin.route("/base/a.txt", Route::fresh(b"a".to_vec()));
    origin.route("/base/b.txt", Route::fresh(b"b".to_vec()));
    let redis = Redis::start();
    redis.cli(&[
        "ACL",
        "SETUSER",
        "fetchfs",
        "on",
        ">right",
        "~fetchfs:v1:*",
        "+@all",
    ]);
    let scratch = tempfile::tempdir().unwrap();
    let password = scratch.path().join("redis.pass");
    std::fs::write(&password, "wrong\n").unwrap();
    let shared = format!(
        "{{ url = \"{}\", user = \"fetchfs\", password_file = \"{}\" }}",
        redis.url(),
        password.display()
    );
    let mut mount = host_with(&origin, &shared);
    assert_eq!(read(&mount.path("o/a.txt")), b"a");
    assert_eq!(read(&mount.path("o/b.txt")), b"b");
    assert_eq!(mount.stat("shared_up"), 0);
    assert_eq!(mount.stat("shared_publishes"), 0);
    mount.external_umount();
    let log = mount.stderr();
    let down: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("fleet tier is down"))
        .collect();
    assert_eq!(down.len(), 1, "{log}");
    assert!(
        down[0].contains("WRONGPASS") || down[0].to_lowercase().contains("auth"),
        "{}",
        down[0]
    );
    assert_eq!(redis.keys("fetchfs:v1:*"), Vec::<String>::new());
}

#[test]
fn a_read_only_user_reads_from_the_fleet_and_never_writes() {
    let origin = Origin::start();
    origin.route("/base/shared.txt", Route::fresh(b"from A".to_vec()));
    origin.route("/base/only-b.txt", Route::fresh(b"B's own".to_vec()));
    let redis = Redis::start();
    redis.cli(&[
        "ACL",
        "SETUSER",
        "reader",
        "on",
        ">readpw",
        "~fetchfs:v1:*",
        "+@read",
        "+@connection",
        "+time",
        "-@write",
    ]);
    let scratch = tempfile::tempdir().unwrap();
    let password = scratch.path().join("reader.pass");
    std::fs::write(&password, "readpw").unwrap();
    let a = host(&origin, &redis);
    read_and_publish(&a, "o/shared.txt");
    let b = host_with(
        &origin,
        &format!(
            "{{ url = \"{}\", user = \"reader\", password_file = \"{}\", mode = \"read-only\" }}",
            redis.url(),
            password.display()
        ),
    );
    assert_eq!(read(&b.path("o/shared.txt")), b"from A");
    assert_eq!(b.stat("shared_hits"), 1);
    assert_eq!(read(&b.path("o/only-b.txt")), b"B's own");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(b.stat("shared_publishes"), 0);
    assert_eq!(redis.keys("fetchfs:v1:url:*").len(), 1, "B wrote nothing");
    assert_eq!(redis.cli(&["ACL", "LOG"]), "", "B was refused something");
}

#[test]
fn rediss_with_a_test_ca_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let openssl = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=fetchfs test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.path().join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext",
    ]);
    let tls_port = redis::free_port();
    let (cert, key, ca) = (path("server.crt"), path("server.key"), path("ca.crt"));
    let redis = Redis::start_with(
        redis::free_port(),
        tempfile::tempdir().unwrap(),
        &[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ],
    );
    let shared = format!("{{ url = \"rediss://127.0.0.1:{tls_port}\", ca_file = \"{ca}\" }}");
    let body = random_bytes(SIZE, 17);
    let origin = Origin::start();
    origin.route("/base/tls.bin", Route::fresh(body.clone()));
    let a = host_with(&origin, &shared);
    read_and_publish(&a, "o/tls.bin");
    let b = host_with(&origin, &shared);
    assert_eq!(read(&b.path("o/tls.bin")), body);
    assert_eq!(b.stat("shared_hits"), 1, "stderr:\n{}", b.stderr());
    assert_eq!(origin.gets("/base/tls.bin"), 1);
    assert_eq!(redis.keys("fetchfs:v1:url:*").len(), 1);
}

/// Kills the connections that follow the command stream (they wait in
/// XREAD), as a network blip would.
fn cut_the_command_stream(redis: &Redis) {
    let clients = redis.cli(&["CLIENT", "LIST"]);
    let ids: Vec<&str> = clients
        .lines()
        .filter(|line| line.contains("cmd=xread"))
        .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
        .collect();
    assert!(!ids.is_empty(), "no follower connected:\n{clients}");
    for id in ids {
        redis.cli(&["CLIENT", "KILL", "ID", id]);
    }
}

/// A host whose connection to the command stream broke reads on from the
/// last command it saw once it reconnects: it misses nothing.
#[test]
fn a_host_that_lost_the_command_stream_catches_up() {
    let fleet = VersionedFleet::start();
    let VersionedFleet { redis, a, b, .. } = &fleet;

    cut_the_command_stream(redis);
    fleet.change_and_invalidate_on(a);
    assert!(
        eventually(Duration::from_secs(5), || b.stat("fleet_commands_received")
            == 1),
        "B did not catch up"
    );
    assert_eq!(read(&b.path("o/v.txt")), b"version 2");
}

/// A host that missed commands the stream no longer holds cannot know
/// what they dropped: it revalidates everything it holds.
#[test]
fn a_host_that_missed_trimmed_commands_revalidates_everything() {
    let fleet = VersionedFleet::start();
    let VersionedFleet { redis, a, b, .. } = &fleet;

    cut_the_command_stream(redis);
    fleet.change_and_invalidate_on(a);
    redis.cli(&["XTRIM", "fetchfs:v1:commands", "MAXLEN", "0"]);
    assert!(
        eventually(Duration::from_secs(5), || b.stderr().contains("were lost")),
        "B did not notice; stderr:\n{}",
        b.stderr()
    );
    assert_eq!(read(&b.path("o/v.txt")), b"version 2");
}

/// Origin `o` serving `f.txt` with `max-age` and an ETag, and two hosts of
/// one fleet.
fn two_hosts_with_max_age(body: &[u8], max_age: u32) -> (Origin, Redis, Mount, Mount) {
    let origin = Origin::start();
    origin.route(
        "/base/f.txt",
        Route::ok(body.to_vec())
            .header("Cache-Control", &format!("max-age={max_age}"))
            .header("ETag", "\"v1\""),
    );
    let redis = Redis::start();
    let a = host(&origin, &redis);
    let b = host(&origin, &redis);
    (origin, redis, a, b)
}

/// Waits until `o/f.txt` (max-age 2) is stale, then reads it on both
/// hosts at once: each gets `expected`.
fn read_on_both_once_stale(a: &Mount, b: &Mount, expected: &[u8]) {
    std::thread::sleep(Duration::from_millis(2500));
    let readers: Vec<_> = [a.path("o/f.txt"), b.path("o/f.txt")]
        .into_iter()
        .map(|path| std::thread::spawn(move || std::fs::read(path)))
        .collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap().unwrap(), expected);
    }
}

/// A body from the fleet keeps its age: fresh for what is left of its
/// max-age on every host, then revalidated once, by the host that reads it.
#[test]
fn a_body_from_the_fleet_keeps_its_age() {
    let (origin, _redis, a, b) = two_hosts_with_max_age(b"three seconds", 3);
    let fetched = std::time::Instant::now();
    read_and_publish(&a, "o/f.txt");
    let asked = origin.requests_to("/base/f.txt").len();

    std::thread::sleep(Duration::from_secs(1).saturating_sub(fetched.elapsed()));
    assert_eq!(read(&b.path("o/f.txt")), b"three seconds");
    assert_eq!(b.stat("shared_hits"), 1);
    assert_eq!(
        origin.requests_to("/base/f.txt").len(),
        asked,
        "fresh: B asked nobody"
    );

    std::thread::sleep(Duration::from_millis(4500).saturating_sub(fetched.elapsed()));
    assert_eq!(read(&b.path("o/f.txt")), b"three seconds");
    let requests = origin.requests_to("/base/f.txt");
    assert_eq!(
        requests.len(),
        asked + 1,
        "one revalidation, by B: {}",
        origin.describe_requests()
    );
    assert!(
        requests[asked].header("If-None-Match").is_some(),
        "a conditional request: {}",
        origin.describe_requests()
    );
    assert_eq!(b.stat("not_modified"), 1);
}

/// Redis short of memory evicts what it likes (allkeys-lru): reads stay
/// right, only more of them go to the origin.
#[test]
fn memory_pressure_in_redis_costs_origin_requests_never_bytes() {
    const FILES: usize = 8;
    const FILE_SIZE: usize = 24 * 1024 * 1024;
    let origin = Origin::start();
    let bodies: Vec<Vec<u8>> = (0..FILES)
        .map(|i| random_bytes(FILE_SIZE, 100 + i as u64))
        .collect();
    for (i, body) in bodies.iter().enumerate() {
        origin.route(&format!("/base/f{i}.bin"), Route::fresh(body.clone()));
    }
    let redis = Redis::start_with(
        redis::free_port(),
        tempfile::tempdir().unwrap(),
        &["--maxmemory", "48mb"],
    );
    let a = host(&origin, &redis);
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(&read(&a.path(&format!("o/f{i}.bin"))), body);
    }
    assert!(
        eventually(Duration::from_secs(20), || a.stat("shared_publishes")
            as usize
            + a.stat("shared_errors") as usize
            >= FILES),
        "publications did not end"
    );
    let b = host(&origin, &redis);
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(&read(&b.path(&format!("o/f{i}.bin"))), body, "file {i}");
    }
    let gets: usize = (0..FILES)
        .map(|i| origin.gets(&format!("/base/f{i}.bin")))
        .sum();
    assert!(gets <= 2 * FILES, "{gets} GETs");
    let used: u64 = redis
        .cli(&["INFO", "memory"])
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap();
    assert!(used <= 64 << 20, "Redis uses {used} bytes");
}

/// A full chunk takes what it holds in Redis, not the size class above it
/// (a value of exactly 4 MiB would take 5 MiB); a body's last, shorter
/// chunk may round up, so a body costs at most a few percent more.
#[test]
fn a_chunk_costs_its_size_in_redis() {
    let origin = Origin::start();
    origin.route("/base/f.bin", Route::fresh(random_bytes(SIZE, 18)));
    let redis = Redis::start();
    let a = host(&origin, &redis);
    read_and_publish(&a, "o/f.bin");
    let chunk = 4 * 1024 * 1024 - 4096;
    let mut total = 0;
    for key in redis.keys("fetchfs:v1:chunk:*") {
        let length: usize = redis.cli(&["STRLEN", &key]).parse().unwrap();
        let usage: usize = redis.cli(&["MEMORY", "USAGE", &key]).parse().unwrap();
        assert!(length <= chunk, "{key}: {length}");
        if length == chunk {
            assert!(
                usage as f64 <= length as f64 * 1.01,
                "{key}: {usage} bytes for {length}"
            );
        }
        total += usage;
    }
    assert!(
        total as f64 <= SIZE as f64 * 1.05,
        "{total} bytes for {SIZE}"
    );
}

/// A body stale on every host is revalidated once for the fleet: one host
/// asks the origin, and the 304 refreshes the fleet's record, which the
/// other hosts take without asking, as does a host that comes later.
#[test]
fn a_stale_body_is_revalidated_once_for_the_fleet() {
    let (origin, redis, a, b) = two_hosts_with_max_age(b"two seconds", 2);
    read_and_publish(&a, "o/f.txt");
    assert_eq!(read(&b.path("o/f.txt")), b"two seconds");
    let before = origin.requests_to("/base/f.txt").len();

    read_on_both_once_stale(&a, &b, b"two seconds");
    let requests = origin.requests_to("/base/f.txt");
    assert_eq!(
        requests.len(),
        before + 1,
        "one revalidation for the fleet: {}",
        origin.describe_requests()
    );
    assert!(requests[before].header("If-None-Match").is_some());
    assert_eq!(a.stat("not_modified") + b.stat("not_modified"), 1);
    assert!(
        eventually(Duration::from_secs(5), || a.stat("shared_publishes")
            + b.stat("shared_publishes")
            >= 2),
        "the 304 did not refresh the fleet's record"
    );

    let c = host(&origin, &redis);
    assert_eq!(read(&c.path("o/f.txt")), b"two seconds");
    assert_eq!(c.stat("shared_hits"), 1);
    assert_eq!(origin.requests_to("/base/f.txt").len(), before + 1);
}

/// A stale body that changed on the origin: the host that revalidates it
/// gets the new body (one conditional request for the fleet), and every
/// other host takes the new body from the fleet, at once or later.
#[test]
fn a_stale_body_that_changed_comes_from_the_origin_once_for_the_fleet() {
    let (origin, redis, a, b) = two_hosts_with_max_age(b"version 1", 2);
    read_and_publish(&a, "o/f.txt");
    assert_eq!(read(&b.path("o/f.txt")), b"version 1");
    origin.route(
        "/base/f.txt",
        Route::ok(b"version 2".to_vec())
            .header("Cache-Control", "max-age=60")
            .header("ETag", "\"v2\""),
    );
    let before = origin.requests_to("/base/f.txt").len();

    read_on_both_once_stale(&a, &b, b"version 2");
    assert_eq!(
        origin.requests_to("/base/f.txt").len(),
        before + 1,
        "one request for the fleet: {}",
        origin.describe_requests()
    );
    let c = host(&origin, &redis);
    assert_eq!(read(&c.path("o/f.txt")), b"version 2");
    assert_eq!(origin.requests_to("/base/f.txt").len(), before + 1);
}

/// A manifest whose chunks each check out but do not make the body it
/// names (here, in the wrong order) is caught by the body's hash.
#[test]
fn a_manifest_that_does_not_make_its_body_is_caught() {
    let body = random_bytes(SIZE, 19);
    let origin = Origin::start();
    origin.route("/base/m.bin", Route::fresh(body.clone()));
    let redis = Redis::start();
    let a = host(&origin, &redis);
    read_and_publish(&a, "o/m.bin");
    let manifests = redis.keys("fetchfs:v1:obj:*");
    assert_eq!(manifests.len(), 1);
    let text = redis.cli(&["GET", &manifests[0]]);
    let mut manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    let chunks = manifest["chunks"].as_array_mut().unwrap();
    chunks.swap(0, 1);
    redis.cli(&["SET", &manifests[0], &manifest.to_string()]);

    let b = host(&origin, &redis);
    assert_eq!(read(&b.path("o/m.bin")), body, "no wrong byte");
    assert_eq!(b.stat("shared_hits"), 0);
    assert_eq!(origin.gets("/base/m.bin"), 2);
}

/// An invalidate applied while Redis is down applies on its host at once,
/// and reaches the other hosts once Redis is back.
#[test]
fn a_command_applied_while_redis_is_down_is_sent_when_it_returns() {
    let mut fleet = VersionedFleet::start();
    let port = fleet.redis.port();
    fleet.redis.kill();
    fleet.change_and_invalidate_on(&fleet.a);
    assert_eq!(
        read(&fleet.a.path("o/v.txt")),
        b"version 2",
        "applied on A at once"
    );

    let _redis = Redis::start_on(port);
    assert!(
        eventually(Duration::from_secs(15), || fleet
            .b
            .stat("fleet_commands_received")
            == 1),
        "B never heard of it; A's stderr:\n{}",
        fleet.a.stderr()
    );
    assert_eq!(read(&fleet.b.path("o/v.txt")), b"version 2");
}

/// The host that leads a URL's fetch brings the whole body, whatever its
/// own readers do: a reader there that reads a little and waits must not
/// hold up the hosts waiting for the fleet's copy.
#[test]
fn a_leader_brings_the_whole_body_for_the_fleet_however_its_readers_read() {
    use std::io::Read;
    const BIG: usize = 48 * 1024 * 1024;
    let body = random_bytes(BIG, 20);
    let origin = Origin::start();
    origin.route("/base/parts.bin", Route::fresh(body.clone()).ranges());
    let redis = Redis::start();
    let a = host(&origin, &redis);
    let b = host(&origin, &redis);
    let mut idle = std::fs::File::open(a.path("o/parts.bin")).unwrap();
    let mut first = vec![0u8; 4096];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(first, body[..4096]);

    let started = std::time::Instant::now();
    assert_eq!(read(&b.path("o/parts.bin")), body);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "B waited {:?} for A's slow reader",
        started.elapsed()
    );
    assert_eq!(b.stat("shared_hits"), 1, "{}", origin.describe_requests());
    drop(idle);
}

/// The GETs `origin` saw for `path`: how many asked for the whole body,
/// and the `Range` of each that asked for a part.
fn whole_and_ranged_gets(origin: &Origin, path: &str) -> (usize, Vec<String>) {
    let gets: Vec<_> = origin
        .requests_to(path)
        .into_iter()
        .filter(|request| request.method == "GET")
        .collect();
    let ranges: Vec<String> = gets
        .iter()
        .filter_map(|request| request.header("Range").map(str::to_string))
        .collect();
    (gets.len() - ranges.len(), ranges)
}

/// A 32 MiB body the origin sends at `rate` bytes/s, in parts if asked,
/// and two hosts: A fetches it (and leads the fleet's fetch), B waits for
/// A's fetch; each reads it whole on a thread of its own.
struct LeaderAndFollower {
    body: Vec<u8>,
    origin: Origin,
    redis: Redis,
    a: Mount,
    b: Mount,
    leader: Reading,
    follower: Reading,
}

type Reading = std::thread::JoinHandle<std::io::Result<Vec<u8>>>;

/// Reads `path` of `mount` whole, on a thread of its own.
fn read_in_background(mount: &Mount, path: &str) -> Reading {
    let path = mount.path(path);
    std::thread::spawn(move || std::fs::read(path))
}

/// Waits until `leader` publishes the progress of a fetch it leads.
fn wait_for_a_fill(redis: &Redis, leader: &Mount) {
    assert!(
        eventually(Duration::from_secs(5), || !redis
            .keys("fetchfs:v1:fill:*")
            .is_empty()),
        "the leader published no progress; stderr:\n{}",
        leader.stderr()
    );
}

/// Waits until a host holds a lease (leads a fetch).
fn wait_for_a_lease(redis: &Redis) {
    assert!(
        eventually(Duration::from_secs(5), || !redis
            .keys("fetchfs:v1:lease:*")
            .is_empty()),
        "no host took a lease"
    );
}

impl LeaderAndFollower {
    fn start(rate: u64) -> LeaderAndFollower {
        let body = random_bytes(32 * 1024 * 1024, 21);
        let origin = Origin::start();
        origin.route(
            "/base/big.bin",
            Route::fresh(body.clone()).ranges().throttle(rate),
        );
        let redis = Redis::start();
        let a = host(&origin, &redis);
        let b = host(&origin, &redis);
        let leader = read_in_background(&a, "o/big.bin");
        wait_for_a_fill(&redis, &a);
        let follower = read_in_background(&b, "o/big.bin");
        LeaderAndFollower {
            body,
            origin,
            redis,
            a,
            b,
            leader,
            follower,
        }
    }
}

/// Checks that the readers were done within `bound` of `since`, and that
/// the origin saw one GET of the whole body and one of a part; returns
/// the part's `Range`.
fn done_in_time_with_one_range_request(
    origin: &Origin,
    since: std::time::Instant,
    bound: Duration,
) -> String {
    let took = since.elapsed();
    assert!(took < bound, "took {took:?}, more than {bound:?}");
    let (whole, ranges) = whole_and_ranged_gets(origin, "/base/big.bin");
    assert_eq!(
        (whole, ranges.len()),
        (1, 1),
        "{}",
        origin.describe_requests()
    );
    eprintln!("done after {took:?}, asking for {}", ranges[0]);
    ranges[0].clone()
}

/// Waits until `count` chunks of a body are in Redis.
fn wait_for_chunks(redis: &Redis, count: usize) {
    assert!(
        eventually(Duration::from_secs(20), || redis
            .keys("fetchfs:v1:chunk:*")
            .len()
            >= count),
        "the fleet never had {count} chunks"
    );
}

/// Cut-through: a host waiting for another's fetch reads each chunk as
/// the leader stores it, so its reader's first bytes come long before
/// the body is whole; still one origin GET for the fleet.
#[test]
fn a_follower_reads_the_body_while_the_leader_fetches_it() {
    use std::io::Read;
    let rate = 4 * 1024 * 1024;
    let body = random_bytes(32 * 1024 * 1024, 22);
    let origin = Origin::start();
    origin.route("/base/slow.bin", Route::fresh(body.clone()).throttle(rate));
    let redis = Redis::start();
    let a = host(&origin, &redis);
    let b = host(&origin, &redis);
    let started = std::time::Instant::now();
    let leader = read_in_background(&a, "o/slow.bin");
    wait_for_a_lease(&redis);
    let mut file = std::fs::File::open(b.path("o/slow.bin")).unwrap();
    let mut first = vec![0u8; 4096];
    file.read_exact(&mut first).unwrap();
    let first_bytes = started.elapsed();
    eprintln!("first bytes after {first_bytes:?}");
    assert_eq!(first, body[..4096]);
    // The whole body takes 8 s at the origin's pace.
    assert!(
        first_bytes < Duration::from_secs(4),
        "B's first bytes came after {first_bytes:?}: not while A fetched"
    );
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, body[4096..], "a wrong byte");
    assert_eq!(leader.join().unwrap().unwrap(), body);
    assert_eq!(
        origin.gets("/base/slow.bin"),
        1,
        "{}",
        origin.describe_requests()
    );
    assert_eq!(b.stat("bytes_from_origin"), 0);
    assert_eq!(b.stat("shared_hits"), 1);
    assert_eq!(b.stat("leases_followed"), 1);
}

/// F4: the leader killed with SIGKILL at about 40% of a throttled fetch.
/// The follower, which has the first chunks from the fleet, takes the
/// fetch over once the lease expires, with one range request for the rest
/// (`If-Range`), and publishes it: a third host then reads the whole body
/// from the fleet. No byte is wrong.
#[test]
fn a_leader_killed_mid_fetch_is_taken_over_with_one_range_request() {
    let rate = 8 * 1024 * 1024;
    let LeaderAndFollower {
        body,
        origin,
        redis,
        mut a,
        b,
        leader,
        follower,
    } = LeaderAndFollower::start(rate);
    wait_for_chunks(&redis, 3);
    a.stop_with(libc::SIGKILL);
    let killed = std::time::Instant::now();
    let _ = leader.join();
    assert_eq!(follower.join().unwrap().unwrap(), body, "a wrong byte");
    // Lease TTL + the rest at the origin's pace (at most 60%) + 2 s.
    let bound = Duration::from_secs(10) + Duration::from_millis(2400) + Duration::from_secs(2);
    let range = done_in_time_with_one_range_request(&origin, killed, bound);
    assert_ne!(range, "bytes=0-", "B had chunks from the fleet");
    assert_eq!(b.stat("leases_taken_over"), 1);
    assert!(
        eventually(Duration::from_secs(10), || b.stat("shared_publishes") == 1),
        "B did not publish what it took over"
    );
    let c = host(&origin, &redis);
    assert_eq!(read(&c.path("o/big.bin")), body);
    assert_eq!(c.stat("bytes_from_origin"), 0);
    assert_eq!(whole_and_ranged_gets(&origin, "/base/big.bin").0, 1);
}

/// F5: Redis killed while a host follows another's fetch. The follower
/// gets the rest from the origin with one range request, the leader goes
/// on without publishing; every reader gets every byte, without an error.
#[test]
fn redis_killed_while_a_host_follows_leaves_the_rest_to_the_origin() {
    let rate = 8 * 1024 * 1024;
    let LeaderAndFollower {
        body,
        origin,
        mut redis,
        a: _a,
        b,
        leader,
        follower,
    } = LeaderAndFollower::start(rate);
    wait_for_chunks(&redis, 2);
    redis.kill();
    let killed = std::time::Instant::now();
    assert_eq!(follower.join().unwrap().unwrap(), body, "B: a wrong byte");
    assert_eq!(leader.join().unwrap().unwrap(), body, "A: a wrong byte");
    // The rest (at most 94%) at the origin's pace + 2 s.
    let bound = Duration::from_millis(3800) + Duration::from_secs(2);
    done_in_time_with_one_range_request(&origin, killed, bound);
    assert!(b.stat("shared_errors") >= 1);
    assert!(b.stat("bytes_from_shared") > 0);
}

/// A host of `origin`'s fleet whose cache is `cache` (kept across mounts).
fn host_in(origin: &Origin, redis: &Redis, cache: &std::path::Path) -> Mount {
    Mount::builder()
        .origin(OriginConfig::new("o", origin.url("/base")))
        .config("shared", &redis.shared_config())
        .cache_dir(cache)
        .mount()
}

/// A host that was down while another applied an `invalidate` applies it
/// when it mounts again: it reads the command stream on from the last
/// command it saw, which it keeps in its cache's index.
#[test]
fn a_host_that_was_down_applies_the_commands_it_missed_when_it_mounts_again() {
    let origin = Origin::start();
    origin.route("/base/v.txt", Route::fresh(b"version 1".to_vec()));
    let redis = Redis::start();
    let cache = tempfile::tempdir().unwrap();
    let a = host(&origin, &redis);
    let mut b = host_in(&origin, &redis, cache.path());
    assert_eq!(read_and_publish(&a, "o/v.txt"), b"version 1");
    assert_eq!(read(&b.path("o/v.txt")), b"version 1");
    // A command B hears while up, so that it has a place in the stream.
    invalidate_on(&a, "/o/other.txt");
    assert!(eventually(Duration::from_secs(5), || b
        .stat("fleet_commands_received")
        == 1));
    b.wait_idle(Duration::from_secs(10));
    assert!(b.unmount().success());
    drop(b);

    origin.route("/base/v.txt", Route::fresh(b"version 2".to_vec()));
    invalidate_on(&a, "/o/v.txt");
    let b = host_in(&origin, &redis, cache.path());
    assert!(
        eventually(Duration::from_secs(5), || b.stat("fleet_commands_received")
            == 1),
        "B did not catch up; stderr:\n{}",
        b.stderr()
    );
    assert_eq!(read(&b.path("o/v.txt")), b"version 2");
}

/// A command applied while Redis is down is kept in the host's index: a
/// restart of that host before Redis returns does not lose it.
#[test]
fn a_command_kept_while_redis_is_down_survives_a_restart() {
    let origin = Origin::start();
    origin.route("/base/v.txt", Route::fresh(b"version 1".to_vec()));
    let mut redis = Redis::start();
    let port = redis.port();
    let cache = tempfile::tempdir().unwrap();
    let mut a = host_in(&origin, &redis, cache.path());
    let b = host(&origin, &redis);
    assert_eq!(read_and_publish(&a, "o/v.txt"), b"version 1");
    assert_eq!(read(&b.path("o/v.txt")), b"version 1");

    redis.kill();
    origin.route("/base/v.txt", Route::fresh(b"version 2".to_vec()));
    invalidate_on(&a, "/o/v.txt");
    a.wait_idle(Duration::from_secs(10));
    assert!(a.unmount().success());
    drop(a);
    let redis = Redis::start_on(port);
    let _a = host_in(&origin, &redis, cache.path());
    assert!(
        eventually(Duration::from_secs(15), || b
            .stat("fleet_commands_received")
            == 1),
        "B never heard of it; B's stderr:\n{}",
        b.stderr()
    );
    assert_eq!(read(&b.path("o/v.txt")), b"version 2");
}

/// A leader that is alive but gives the others nothing (no new chunk for
/// the origin's `timeout` plus the lease's 10 s) is bypassed: the waiting
/// host fetches the body itself rather than wait on.
#[test]
fn a_leader_that_makes_no_progress_is_bypassed() {
    let body = random_bytes(6 * 1024 * 1024, 23);
    let origin = Origin::start();
    // A's answer: its first chunk takes 16 s.
    origin.route(
        "/base/stall.bin",
        Route::fresh(body.clone()).ranges().throttle(256 * 1024),
    );
    let redis = Redis::start();
    let host = || {
        Mount::builder()
            .origin(OriginConfig::new("o", origin.url("/base")).timeout("1s"))
            .config("shared", &redis.shared_config())
            .mount()
    };
    let (a, b) = (host(), host());
    let _leader = read_in_background(&a, "o/stall.bin");
    wait_for_a_fill(&redis, &a);
    // What B asks the origin for comes at once.
    origin.route("/base/stall.bin", Route::fresh(body.clone()).ranges());
    let started = std::time::Instant::now();
    assert_eq!(read(&b.path("o/stall.bin")), body);
    let took = started.elapsed();
    // 1 s + 10 s without a chunk, then the body; A needs 24 s for it.
    assert!(
        took > Duration::from_secs(10) && took < Duration::from_secs(16),
        "B took {took:?}"
    );
    assert_eq!(b.stat("lease_bypasses"), 1);
    assert_eq!(b.stat("bytes_from_shared"), 0);
}

/// Hosts that name an origin differently still hear each other's
/// commands: an exact path or a directory travels as the URL it stands
/// for, a glob with the URL of the origin it starts with, and each host
/// maps them through its own origins; a URL that none of a host's origins
/// holds is nothing there, not an error.
#[test]
fn a_command_reaches_a_host_that_names_the_origin_otherwise() {
    let origin = Origin::start();
    origin.route("/base/v.txt", Route::fresh(b"version 1".to_vec()));
    origin.route("/base/dir/w.txt", Route::fresh(b"w 1".to_vec()));
    origin.route("/base/globbed/g.txt", Route::fresh(b"g 1".to_vec()));
    let redis = Redis::start();
    let named = |name: &str| {
        Mount::builder()
            .origin(OriginConfig::new(name, origin.url("/base")).listing("none"))
            .config("shared", &redis.shared_config())
            .mount()
    };
    let (a, b) = (named("o"), named("rel"));
    assert_eq!(read_and_publish(&a, "o/v.txt"), b"version 1");
    assert_eq!(read(&a.path("o/dir/w.txt")), b"w 1");
    assert_eq!(read(&b.path("rel/v.txt")), b"version 1");
    assert_eq!(read(&b.path("rel/dir/w.txt")), b"w 1");
    assert_eq!(read(&a.path("o/globbed/g.txt")), b"g 1");
    assert_eq!(read(&b.path("rel/globbed/g.txt")), b"g 1");

    origin.route("/base/v.txt", Route::fresh(b"version 2".to_vec()));
    origin.route("/base/dir/w.txt", Route::fresh(b"w 2".to_vec()));
    origin.route("/base/globbed/g.txt", Route::fresh(b"g 2".to_vec()));
    invalidate_on(&a, "/o/v.txt\n/o/dir/\n/o/glob*/*.txt\n");
    assert!(
        eventually(Duration::from_secs(2), || b.stat("fleet_commands_received")
            == 1),
        "B did not hear of it"
    );
    assert_eq!(read(&b.path("rel/v.txt")), b"version 2");
    assert_eq!(read(&b.path("rel/dir/w.txt")), b"w 2");
    assert_eq!(read(&b.path("rel/globbed/g.txt")), b"g 2");
    assert!(
        !b.stderr().contains("not inside any configured origin"),
        "{}",
        b.stderr()
    );
}

/// A body of one chunk is read without its manifest, and an empty body
/// comes from the fleet too; a damaged single chunk is still caught.
#[test]
fn small_and_empty_bodies_come_from_the_fleet() {
    let origin = Origin::start();
    let small = random_bytes(4096, 24);
    origin.route("/base/small.bin", Route::fresh(small.clone()));
    origin.route("/base/empty.bin", Route::fresh(Vec::new()));
    origin.route("/base/damaged.bin", Route::fresh(random_bytes(4096, 25)));
    let redis = Redis::start();
    let a = host(&origin, &redis);
    for path in ["o/small.bin", "o/empty.bin", "o/damaged.bin"] {
        read(&a.path(path));
    }
    assert!(
        eventually(Duration::from_secs(10), || a.stat("shared_publishes") == 3),
        "A published {}",
        a.stat("shared_publishes")
    );
    // The damaged body's one chunk is named by the body's hash.
    let damaged = redis
        .keys("fetchfs:v1:url:*")
        .into_iter()
        .map(|key| serde_json::from_str::<serde_json::Value>(&redis.cli(&["GET", &key])).unwrap())
        .find(|record| record["url"].as_str().unwrap().ends_with("/damaged.bin"))
        .map(|record| format!("fetchfs:v1:chunk:{}", record["b3"].as_str().unwrap()))
        .expect("the damaged body's record");
    redis.cli(&["SETRANGE", &damaged, "0", "garbage"]);

    let b = host(&origin, &redis);
    assert_eq!(read(&b.path("o/small.bin")), small);
    assert_eq!(read(&b.path("o/empty.bin")), b"");
    let before = origin.gets("/base/damaged.bin");
    assert_eq!(read(&b.path("o/damaged.bin")).len(), 4096);
    assert_eq!(origin.gets("/base/small.bin"), 1);
    assert_eq!(origin.gets("/base/empty.bin"), 1);
    assert_eq!(origin.gets("/base/damaged.bin"), before + 1, "refetched");
    assert_eq!(b.stat("shared_hits"), 2);
}

/// A body the origin sends without a length (chunked) is followed too:
/// the follower learns its size at the end, and every byte is right.
#[test]
fn a_body_without_a_length_is_followed_through_the_fleet() {
    let body = random_bytes(12 * 1024 * 1024, 26);
    let origin = Origin::start();
    origin.route(
        "/base/chunked.bin",
        Route::fresh(body.clone())
            .chunked()
            .throttle(8 * 1024 * 1024),
    );
    let redis = Redis::start();
    let a = host(&origin, &redis);
    let b = host(&origin, &redis);
    let leader = read_in_background(&a, "o/chunked.bin");
    wait_for_a_fill(&redis, &a);
    assert_eq!(read(&b.path("o/chunked.bin")), body);
    assert_eq!(leader.join().unwrap().unwrap(), body);
    assert_eq!(origin.gets("/base/chunked.bin"), 1);
    assert_eq!(b.stat("leases_followed"), 1);
    assert_eq!(b.stat("shared_hits"), 1);
}

/// A response the fleet may not share (`private`) releases the lease at
/// once, with word to the hosts waiting: each fetches it itself, at the
/// same time, rather than one after the other.
#[test]
fn hosts_waiting_for_a_response_that_is_not_shared_fetch_it_at_once() {
    let body = random_bytes(4 * 1024 * 1024, 27);
    let origin = Origin::start();
    // Two seconds a body.
    origin.route(
        "/base/mine.bin",
        Route::ok(body.clone())
            .header("Cache-Control", "private, max-age=3600")
            .throttle(2 * 1024 * 1024),
    );
    let redis = Redis::start();
    let hosts: Vec<Mount> = (0..3).map(|_| host(&origin, &redis)).collect();
    let started = std::time::Instant::now();
    let readers: Vec<_> = hosts
        .iter()
        .map(|mount| read_in_background(mount, "o/mine.bin"))
        .collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap().unwrap(), body);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the hosts fetched it one after the other: {:?}",
        started.elapsed()
    );
    assert_eq!(origin.gets("/base/mine.bin"), 3);
    assert_eq!(redis.keys("fetchfs:v1:url:*"), Vec::<String>::new());
}
