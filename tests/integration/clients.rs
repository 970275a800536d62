//! Real clients on a mount: apt, pip, git, tar, rsync, sqlite3, Python's
//! `mmap` and `sendfile`, and `sha256sum`. Each test builds a site on local
//! disk (a Debian repository, a wheel mirror, a bare git repository, a
//! tarball...), serves it from an origin on 127.0.0.1 with nginx-style
//! listings, runs the client on the mount and checks what it made byte for
//! byte against the site. These programs use a filesystem in ways the other
//! tests do not: apt reads as the `_apt` user, git and sqlite3 map files,
//! rsync compares checksums, pip and tar seek around archives.
//!
//! The README's examples are these tests; each names the example it backs.
//! The clients come from `scripts/install-deps.sh test`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use crate::common::origin::http_date;
use crate::common::*;

/// Long enough for apt or pip on a busy two-core machine.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `command` and panics with its output unless it succeeds.
fn run_ok(command: &mut Command) -> Output {
    let output = run_with_timeout(command, CLIENT_TIMEOUT);
    assert!(
        output.status.success(),
        "{command:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `command`'s stdout, which must succeed.
fn stdout_of(command: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(command).stdout).into_owned()
}

/// Serves the directory `site` with HTML listings and mounts it as origin
/// `name`, with the extra `fetchfs mount` arguments `args`.
fn mount_site(name: &str, site: &Path, args: &[&str]) -> (Origin, Mount) {
    let origin = Origin::start();
    origin.serve_dir("/site", site, Listing::Html);
    let mut builder = Mount::builder().origin(OriginConfig::new(name, origin.url("/site")));
    for arg in args {
        builder = builder.arg(arg);
    }
    (origin, builder.mount())
}

/// Writes `body` to `path`, creating its parents.
fn write_file(path: &Path, body: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("create parents");
    std::fs::write(path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Asserts that the trees under `got` and `expected` hold the same
/// directories and the same files with the same bytes.
#[track_caller]
fn assert_same_tree(got: &Path, expected: &Path) {
    let (got_dirs, got_files) = read_tree(got);
    let (expected_dirs, expected_files) = read_tree(expected);
    assert_eq!(
        got_dirs,
        expected_dirs,
        "directories under {}",
        got.display()
    );
    assert_same_files(&got_files, &expected_files, &got.display().to_string());
}

/// A small release tree: nested directories, an empty file, and files from
/// a few bytes to over a MiB.
fn write_release_tree(root: &Path) {
    let files = [
        ("README", 1000),
        ("bin/tool", 1_300_001),
        ("lib/a/b/libx.so", 350_002),
        ("share/empty", 0),
        ("share/data.bin", 70_003),
    ];
    for (seed, (rel, len)) in (9100..).zip(files) {
        write_file(&root.join(rel), &random_bytes(len, seed));
    }
}

/// A Debian package, `dpkg --purge`d when dropped, so that a failing test
/// does not leave it installed.
struct InstalledPackage(&'static str);

impl Drop for InstalledPackage {
    fn drop(&mut self) {
        let output = Command::new("dpkg")
            .args(["--log=/dev/null", "--purge", self.0])
            .output();
        if !output.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("dpkg --purge {} failed: {output:?}", self.0);
        }
    }
}

const DEB_PACKAGE: &str = "fetchfs-client-test";
const DEB_INSTALLED_FILE: &str = "/usr/share/fetchfs-client-test/payload.bin";

/// Builds `DEB_PACKAGE` holding `payload` with `dpkg-deb --build`; its path.
fn build_deb(work: &Path, payload: &[u8]) -> PathBuf {
    let root = work.join("deb-root");
    write_file(
        &root.join("DEBIAN/control"),
        format!(
            "Package: {DEB_PACKAGE}\nVersion: 1.0\nArchitecture: all\n\
             Maintainer: fetchfs tests <tests@example.org>\n\
             Description: a package the fetchfs tests install\n \
             apt installs it from a mirror read through a fetchfs mount.\n"
        )
        .as_bytes(),
    );
    write_file(
        &root.join(DEB_INSTALLED_FILE.trim_start_matches('/')),
        payload,
    );
    let deb = work.join(format!("{DEB_PACKAGE}_1.0_all.deb"));
    run_ok(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&root)
            .arg(&deb),
    );
    deb
}

/// Lays out a Debian repository for suite `bookworm`, component `main`, as
/// a mirror does: the package under `pool/`, its index from
/// `dpkg-scanpackages`, compressed, and a `Release` (unsigned) with the
/// hashes of the index and of its uncompressed form, which apt checks after
/// decompressing it. Returns the .deb's path relative to `site`.
fn write_debian_repository(site: &Path, deb: &Path) -> String {
    let pool_deb = format!(
        "pool/main/f/{DEB_PACKAGE}/{}",
        deb.file_name().unwrap().to_string_lossy()
    );
    write_file(&site.join(&pool_deb), &read(deb));
    let arch = stdout_of(Command::new("dpkg").arg("--print-architecture"));
    let arch = arch.trim();
    let packages = stdout_of(
        Command::new("dpkg-scanpackages")
            .arg("pool")
            .current_dir(site),
    );
    let suite = site.join("dists/bookworm");
    let index = format!("main/binary-{arch}/Packages");
    write_file(&suite.join(&index), packages.as_bytes());
    run_ok(Command::new("gzip").arg("-9n").arg(suite.join(&index)));
    let packages_gz = read(&suite.join(format!("{index}.gz")));
    let release = format!(
        "Origin: fetchfs-tests\nSuite: bookworm\nCodename: bookworm\nDate: {}\n\
         Architectures: {arch}\nComponents: main\nSHA256:\n {} {} {index}\n {} {} {index}.gz\n",
        http_date(SystemTime::now()),
        sha256_hex(packages.as_bytes()),
        packages.len(),
        sha256_hex(&packages_gz),
        packages_gz.len(),
    );
    write_file(&suite.join("Release"), release.as_bytes());
    pool_deb
}

/// Writes an apt config that reads only `sources` and keeps apt's lists,
/// cache and logs in `work`, so the machine's own apt setup is neither used
/// nor touched; returns its path, for `APT_CONFIG`, which apt reads before
/// `/etc/apt/apt.conf.d` (and this config points that elsewhere too).
fn apt_config(work: &Path, sources: &str) -> PathBuf {
    let dir = |name: &str| {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).expect("apt dir");
        dir.display().to_string()
    };
    dir("state/lists/partial");
    dir("cache/archives/partial");
    let sources_list = work.join("sources.list");
    std::fs::write(&sources_list, sources).expect("write sources.list");
    let config = format!(
        "Dir::Etc::SourceList \"{}\";\nDir::Etc::SourceParts \"{nothing}\";\n\
         Dir::Etc::Parts \"{nothing}\";\nDir::Etc::PreferencesParts \"{nothing}\";\n\
         Dir::State \"{}\";\nDir::Cache \"{}\";\nDir::Log \"{}\";\n\
         DPkg::Options:: \"--log=/dev/null\";\nDPkg::Lock::Timeout \"60\";\n",
        sources_list.display(),
        dir("state"),
        dir("cache"),
        dir("log"),
        nothing = dir("nothing"),
    );
    let config_path = work.join("apt.conf");
    std::fs::write(&config_path, config).expect("write apt.conf");
    config_path
}

/// `apt-get -q` with the config `config` and no questions.
fn apt_get(config: &Path) -> Command {
    let mut command = Command::new("apt-get");
    command
        .arg("-q")
        .env("APT_CONFIG", config)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C");
    command
}

/// Backs the README's "apt: a Debian mirror" example: a mount with
/// `--allow-other`, a `file:` source into it, `apt-get update` and `apt-get
/// install`. Without `--allow-other`, `apt-get update` fails: apt unpacks
/// `Packages.gz` as `_apt`, who then gets EACCES from the mount. This mirror
/// is unsigned, so `[trusted=yes]` stands in for the real mirror's
/// `signed-by`. Also backs the README's first example: `ls`, `dpkg-deb -c`
/// and `sha256sum` of a .deb on the mount.
#[test]
fn apt_installs_a_package_from_a_mirror_on_the_mount() {
    let work = tempfile::tempdir().unwrap();
    // apt fetches as `_apt`, which must reach its lists dir in here,
    // whatever the umask.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let payload = random_bytes(40_000, 9001);
    let deb = build_deb(work.path(), &payload);
    let site = work.path().join("site");
    let pool_deb = write_debian_repository(&site, &deb);
    let (origin, mount) = mount_site("debian", &site, &["--allow-other"]);
    mount.let_other_users_in();
    let mirror = mount.path("debian");

    let listed: Vec<String> = std::fs::read_dir(mirror.join(&pool_deb).parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, [deb.file_name().unwrap().to_string_lossy()], "ls");
    let contents = stdout_of(
        Command::new("dpkg-deb")
            .arg("-c")
            .arg(mirror.join(&pool_deb)),
    );
    assert!(
        contents.contains(&format!(".{DEB_INSTALLED_FILE}")),
        "dpkg-deb -c:\n{contents}"
    );
    assert_eq!(
        sha256sum_file(&mirror.join(&pool_deb)),
        sha256_hex(&read(&deb)),
        "sha256sum of the .deb on the mount"
    );

    let apt_dir = work.path().join("apt");
    let config = apt_config(
        &apt_dir,
        &format!(
            "deb [trusted=yes] file:{} bookworm main\n",
            mirror.display()
        ),
    );
    run_ok(apt_get(&config).arg("update"));
    let installed = InstalledPackage(DEB_PACKAGE);
    run_ok(apt_get(&config).args(["install", "-y", "--no-install-recommends", DEB_PACKAGE]));

    assert_same_bytes(
        &read(Path::new(DEB_INSTALLED_FILE)),
        &payload,
        "installed file",
    );
    assert_eq!(
        origin.gets(&format!("/site/{pool_deb}")),
        1,
        "the .deb crosses the network once:\n{}",
        origin.describe_requests()
    );
    let archived = read_tree(&apt_dir.join("cache/archives")).1;
    assert!(
        archived.keys().all(|name| !name.ends_with(".deb")),
        "apt copied the .deb instead of using it in place: {:?}",
        archived.keys()
    );
    drop(installed);
    assert!(
        !Path::new(DEB_INSTALLED_FILE).exists(),
        "{DEB_INSTALLED_FILE} is still there after dpkg --purge"
    );
}

/// Builds a minimal valid wheel (PEP 427) from the files under `src`:
/// those files, `METADATA`, `WHEEL` and a `RECORD` with their hashes.
const BUILD_WHEEL_PY: &str = r#"
import base64, hashlib, os, sys, zipfile

src, dist, version, out_dir = sys.argv[1:5]
info = f"{dist}-{version}.dist-info"
files = {}
for root, _, names in os.walk(src):
    for name in sorted(names):
        path = os.path.join(root, name)
        with open(path, "rb") as f:
            files[os.path.relpath(path, src)] = f.read()
files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode()
files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: fetchfs-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"

def digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

record = "".join(f"{p},{digest(d)},{len(d)}\n" for p, d in files.items()) + f"{info}/RECORD,,\n"
wheel = os.path.join(out_dir, f"{dist}-{version}-py3-none-any.whl")
with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
    for p, d in files.items():
        z.writestr(p, d)
    z.writestr(f"{info}/RECORD", record)
"#;

/// A module that hashes the data file installed beside it.
const WHEEL_MODULE_PY: &str = r#"import hashlib, pathlib

def payload_sha256():
    return hashlib.sha256((pathlib.Path(__file__).parent / "payload.bin").read_bytes()).hexdigest()
"#;

/// Writes the wheel of package `module` (a module and its `payload`) into
/// `mirror`; its file name.
fn build_wheel(work: &Path, mirror: &Path, module: &str, payload: &[u8]) -> String {
    let src = work.join(format!("{module}-src"));
    write_file(
        &src.join(module).join("__init__.py"),
        WHEEL_MODULE_PY.as_bytes(),
    );
    write_file(&src.join(module).join("payload.bin"), payload);
    std::fs::create_dir_all(mirror).unwrap();
    run_ok(
        Command::new("python3")
            .args(["-c", BUILD_WHEEL_PY])
            .arg(&src)
            .args([module, "1.0"])
            .arg(mirror),
    );
    format!("{module}-1.0-py3-none-any.whl")
}

/// Backs the README's "pip: a wheel index mirror" example: `pip install
/// --no-index --find-links` a directory of the mount lists it and opens only
/// the wheel it installs.
#[test]
fn pip_installs_a_wheel_from_a_mirror_on_the_mount() {
    let work = tempfile::tempdir().unwrap();
    let site = work.path().join("site");
    let payload = random_bytes(200_000, 9002);
    build_wheel(work.path(), &site, "fetchfs_client_test", &payload);
    let other = build_wheel(
        work.path(),
        &site,
        "fetchfs_client_other",
        &random_bytes(1000, 9003),
    );
    let (origin, mount) = mount_site("mirror", &site, &[]);
    let target = work.path().join("target");

    run_ok(
        Command::new("python3")
            .args(["-m", "pip", "install", "--no-index", "--find-links"])
            .arg(mount.path("mirror/"))
            .arg("--target")
            .arg(&target)
            .args(["--no-cache-dir", "--disable-pip-version-check"])
            .arg("fetchfs-client-test")
            .env("PIP_CONFIG_FILE", "/dev/null"),
    );

    let installed = target.join("fetchfs_client_test");
    assert_same_bytes(
        &read(&installed.join("__init__.py")),
        WHEEL_MODULE_PY.as_bytes(),
        "installed module",
    );
    assert_same_bytes(
        &read(&installed.join("payload.bin")),
        &payload,
        "installed data",
    );
    let imported = stdout_of(
        Command::new("python3")
            .args([
                "-c",
                "import fetchfs_client_test as m; print(m.payload_sha256())",
            ])
            .env("PYTHONPATH", &target),
    );
    assert_eq!(imported.trim(), sha256_hex(&payload), "the imported module");
    assert_eq!(
        origin.gets(&format!("/site/{other}")),
        0,
        "pip opened a wheel it did not install:\n{}",
        origin.describe_requests()
    );
}

/// `git` with no system or user config, and a fixed identity for commits.
fn git() -> Command {
    let mut command = Command::new("git");
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "fetchfs tests")
        .env("GIT_AUTHOR_EMAIL", "tests@example.org")
        .env("GIT_COMMITTER_NAME", "fetchfs tests")
        .env("GIT_COMMITTER_EMAIL", "tests@example.org");
    command
}

/// Adds a commit to the repository `work` that changes its files.
fn commit(work: &Path, n: u64) {
    write_file(
        &work.join("README"),
        format!("project, version {n}\n").as_bytes(),
    );
    write_file(
        &work.join(format!("data/{n}.bin")),
        &random_bytes(30_000 + n as usize * 1000, 9010 + n),
    );
    run_ok(git().arg("-C").arg(work).args(["add", "-A"]));
    run_ok(
        git()
            .arg("-C")
            .arg(work)
            .args(["commit", "-q", "-m", &format!("version {n}")]),
    );
}

/// The files of `checkout` without its `.git`, as [`read_tree`] reads them.
fn checkout_files(checkout: &Path) -> BTreeMap<String, Vec<u8>> {
    let (_, mut files) = read_tree(checkout);
    files.retain(|rel, _| !rel.starts_with(".git/"));
    files
}

/// Backs the README's "git: a repository published as plain files" example:
/// `git clone` of a bare repository on the mount, packed and loose objects
/// alike, and `git fsck --full` of the clone and of the mounted repository.
#[test]
fn git_clones_a_repository_on_the_mount() {
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path().join("work");
    run_ok(git().args(["init", "-q", "-b", "main"]).arg(&work));
    for n in 1..=3 {
        commit(&work, n);
    }
    let bare = scratch.path().join("site/project.git");
    run_ok(git().args(["clone", "-q", "--bare"]).arg(&work).arg(&bare));
    run_ok(
        git()
            .arg("-C")
            .arg(&bare)
            .args(["repack", "-q", "-a", "-d"]),
    );
    // A push after the repack leaves loose objects and a loose ref beside
    // the pack, as on a live server.
    commit(&work, 4);
    run_ok(
        git()
            .arg("-C")
            .arg(&work)
            .args(["push", "-q"])
            .arg(&bare)
            .arg("main"),
    );
    run_ok(git().arg("-C").arg(&bare).arg("update-server-info"));
    let (_, objects) = read_tree(&bare.join("objects"));
    let packed = objects.keys().any(|rel| rel.starts_with("pack/"));
    // A loose object is `xx/` and the other 38 hex digits of its name.
    let loose = objects
        .keys()
        .any(|rel| rel.len() == 41 && rel.as_bytes()[2] == b'/');
    assert!(
        packed && loose,
        "the served repository has packed and loose objects: {:?}",
        objects.keys()
    );
    let (_origin, mount) = mount_site("src", &scratch.path().join("site"), &[]);
    let mounted = mount.path("src/project.git");
    let clone = scratch.path().join("clone");

    run_ok(git().args(["clone", "-q"]).arg(&mounted).arg(&clone));

    run_ok(
        git()
            .arg("-C")
            .arg(&clone)
            .args(["fsck", "--full", "--strict"]),
    );
    run_ok(
        git()
            .arg("--git-dir")
            .arg(&mounted)
            .args(["fsck", "--full"]),
    );
    let head = |repo: &Path| stdout_of(git().arg("-C").arg(repo).args(["rev-parse", "HEAD"]));
    assert_eq!(head(&clone), head(&work), "HEAD of the clone");
    assert_same_files(&checkout_files(&clone), &checkout_files(&work), "the clone");
}

/// Backs the README's "CI and build farms" example: `tar xzf` of a release
/// tarball on the mount.
#[test]
fn tar_extracts_a_release_tarball_from_the_mount() {
    let scratch = tempfile::tempdir().unwrap();
    let tree = scratch.path().join("tree");
    write_release_tree(&tree);
    let tarball = "tool/1.4.2/tool-1.4.2-x86_64-linux.tar.gz";
    let site = scratch.path().join("site");
    std::fs::create_dir_all(site.join(tarball).parent().unwrap()).unwrap();
    run_ok(
        Command::new("tar")
            .arg("czf")
            .arg(site.join(tarball))
            .arg("-C")
            .arg(&tree)
            .arg("."),
    );
    let (_origin, mount) = mount_site("rel", &site, &[]);
    let out = scratch.path().join("out");
    std::fs::create_dir(&out).unwrap();

    run_ok(
        Command::new("tar")
            .arg("xzf")
            .arg(mount.path("rel").join(tarball))
            .arg("-C")
            .arg(&out),
    );

    assert_same_tree(&out, &tree);
}

/// `rsync -a --checksum` copies a served tree out of the mount, and a second
/// run, comparing every file by checksum, finds nothing to change.
#[test]
fn rsync_copies_a_tree_out_of_the_mount() {
    let scratch = tempfile::tempdir().unwrap();
    let site = scratch.path().join("site");
    write_release_tree(&site.join("tool"));
    let (_origin, mount) = mount_site("rel", &site, &[]);
    let source = format!("{}/", mount.path("rel/tool").display());
    let out = scratch.path().join("out");
    let rsync = || {
        let mut command = Command::new("rsync");
        command.args(["-a", "--checksum"]);
        command
    };

    run_ok(rsync().arg(&source).arg(&out));
    let changes = stdout_of(
        rsync()
            .args(["--dry-run", "--itemize-changes"])
            .arg(&source)
            .arg(&out),
    );

    assert_same_tree(&out, &site.join("tool"));
    assert_eq!(changes, "", "rsync --checksum finds differences");
}

/// What the sqlite3 test sets `PRAGMA mmap_size` to, to map the database.
const MMAP_BYTES: u64 = 64 << 20;

/// What `sqlite3 -readonly` prints for `db` with `PRAGMA mmap_size` set to
/// `mmap_size`: the mmap size it took, the integrity check, the row count
/// and a SHA3 of every row.
fn sqlite_digest(db: &Path, mmap_size: u64) -> String {
    stdout_of(
        Command::new("sqlite3")
            .args(["-readonly", "-batch"])
            .arg(db)
            .arg(format!(
                "PRAGMA mmap_size={mmap_size}; PRAGMA integrity_check; \
                 SELECT count(*), hex(sha3_query('SELECT * FROM t ORDER BY id')) FROM t;"
            )),
    )
}

/// `sqlite3 -readonly` queries a database on the mount, with memory-mapped
/// I/O (`PRAGMA mmap_size`) on and off, and reads what it reads on disk.
#[test]
fn sqlite3_reads_a_database_on_the_mount_with_and_without_mmap() {
    let scratch = tempfile::tempdir().unwrap();
    let site = scratch.path().join("site");
    std::fs::create_dir(&site).unwrap();
    let db = site.join("catalog.db");
    run_ok(Command::new("sqlite3").arg(&db).arg(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
         INSERT INTO t SELECT i, randomblob(300) FROM n;",
    ));
    let (_origin, mount) = mount_site("rel", &site, &[]);

    // Mapped first, while the file is cold.
    let mapped = sqlite_digest(&mount.path("rel/catalog.db"), MMAP_BYTES);
    let unmapped = sqlite_digest(&mount.path("rel/catalog.db"), 0);

    assert_eq!(mapped, sqlite_digest(&db, MMAP_BYTES), "with mmap");
    assert_eq!(unmapped, sqlite_digest(&db, 0), "without mmap");
    assert!(
        mapped.starts_with(&format!("{MMAP_BYTES}\nok\n3000|")),
        "mmap on, intact, every row: {mapped}"
    );
}

/// Hashes `argv[1]` through `mmap`, then copies it to `argv[2]` with
/// `os.sendfile`; prints the hash.
const MMAP_AND_SENDFILE_PY: &str = r#"
import hashlib, mmap, os, sys

with open(sys.argv[1], "rb") as f:
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        print(hashlib.sha256(m).hexdigest())
src = os.open(sys.argv[1], os.O_RDONLY)
dst = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
size, offset = os.fstat(src).st_size, 0
while offset < size:
    sent = os.sendfile(dst, src, offset, size - offset)
    assert sent > 0, f"sendfile returned {sent} at {offset} of {size}"
    offset += sent
"#;

/// Python's `mmap` of a file on the mount (cold) sees the origin's bytes,
/// and `os.sendfile` from it copies them.
#[test]
fn python_mmap_and_sendfile_read_a_file_on_the_mount() {
    let scratch = tempfile::tempdir().unwrap();
    let site = scratch.path().join("site");
    let body = random_bytes((3 << 20) + 4321, 9004);
    write_file(&site.join("weights.bin"), &body);
    let (_origin, mount) = mount_site("ml", &site, &[]);
    let copy = scratch.path().join("copy.bin");

    let mapped = stdout_of(
        Command::new("python3")
            .args(["-c", MMAP_AND_SENDFILE_PY])
            .arg(mount.path("ml/weights.bin"))
            .arg(&copy),
    );

    assert_eq!(mapped.trim(), sha256_hex(&body), "sha256 through mmap");
    assert_same_bytes(&read(&copy), &body, "sendfile copy");
}
