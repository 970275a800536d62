//! fstab and systemd without booting a systemd: the fstab generator turns a
//! fetchfs line into a mount unit (and an automount unit for
//! `x-systemd.automount`), the mount command that unit runs mounts fetchfs
//! read-only through the helper, and the example units in
//! packaging/systemd/ pass `systemd-analyze verify`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::mount;
use crate::common::*;

const GENERATOR: &str = "/lib/systemd/system-generators/systemd-fstab-generator";

/// `KEY=value` of a unit file's `[section]`.
fn unit_value(unit: &str, section: &str, key: &str) -> Option<String> {
    let mut in_section = false;
    for line in unit.lines() {
        if line.starts_with('[') {
            in_section = line == format!("[{section}]");
        } else if in_section && let Some(value) = line.strip_prefix(&format!("{key}=")) {
            return Some(value.to_string());
        }
    }
    None
}

#[test]
fn an_fstab_line_becomes_units_whose_mount_mounts_fetchfs() {
    let origin = Origin::start();
    origin.route("/base/tool.tar.gz", Route::fresh(b"a tarball".to_vec()));
    let scratch = tempfile::tempdir().unwrap();
    let (mountpoint, fstab) = mount::fstab_line(
        scratch.path(),
        "artifacts",
        "rel",
        &origin.url("/base"),
        "allow_other,x-systemd.automount,_netdev",
    );
    let units = scratch.path().join("units");
    std::fs::create_dir(&units).unwrap();
    let generated = run_with_timeout(
        Command::new(GENERATOR)
            .args([&units, &units, &units])
            .env("SYSTEMD_FSTAB", &fstab),
        Duration::from_secs(30),
    );
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let name = escaped(&mountpoint);
    let mount_unit = std::fs::read_to_string(units.join(format!("{name}.mount")))
        .unwrap_or_else(|e| panic!("no {name}.mount: {e}"));
    assert!(
        units.join(format!("{name}.automount")).exists(),
        "x-systemd.automount makes an automount unit"
    );
    let what = unit_value(&mount_unit, "Mount", "What").unwrap();
    let fstype = unit_value(&mount_unit, "Mount", "Type").unwrap();
    let options = unit_value(&mount_unit, "Mount", "Options").unwrap();
    assert_eq!(fstype, "fetchfs");

    // What systemd runs for the unit: mount WHAT WHERE -t TYPE -o OPTIONS,
    // with a mount.fetchfs helper on the path mount(8) searches.
    let _helper = mount::MountHelper::install();
    let _cleanup = mount::DetachedMount(mountpoint.clone());
    let mounted = run_with_timeout(
        Command::new("mount")
            .arg(&what)
            .arg(&mountpoint)
            .args(["-t", &fstype, "-o", &options]),
        Duration::from_secs(30),
    );
    assert!(
        mounted.status.success(),
        "{}",
        String::from_utf8_lossy(&mounted.stderr)
    );
    assert_eq!(
        mount::mount_fstype(&mountpoint).as_deref(),
        Some("fuse.fetchfs")
    );
    let options = mount_options(&mountpoint).unwrap();
    assert!(options.starts_with("ro,"), "{options}");
    assert_eq!(read(&mountpoint.join("rel/tool.tar.gz")), b"a tarball");
    let unmounted = run_fetchfs(
        &["umount", mountpoint.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(unmounted.status.success());
}

#[test]
fn the_example_units_pass_systemd_analyze_verify() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd");
    let output = run_with_timeout(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(units.join("mnt-artifacts.mount"))
            .arg(units.join("mnt-artifacts.automount")),
        Duration::from_secs(60),
    );
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `systemd-escape -p PATH`.
fn escaped(path: &Path) -> String {
    let output = Command::new("systemd-escape")
        .arg("-p")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}
