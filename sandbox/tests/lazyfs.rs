//! The power-cut filesystem keeps exactly what was made durable: fsync of a file for its
//! content, fsync of its directory for its name. Real FUSE mounts (as root: the mount syscall;
//! otherwise fusermount3), each test in its own folders, unmounted even when it fails.

mod lazyfs_support;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::time::Instant;

use lazyfs_support::{Dirs, is_mounted, sync_dir, write_synced};

#[test]
fn an_unsynced_write_is_lost_and_a_synced_one_survives_with_its_exact_content() {
    let dirs = Dirs::new();
    let lazy = dirs.mount();
    let kept: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write_synced(&dirs.mnt("kept"), &kept);
    sync_dir(&dirs.mnt);
    fs::write(dirs.mnt("lost"), b"never fsynced").unwrap();
    assert_eq!(fs::read(dirs.mnt("lost")).unwrap(), b"never fsynced");

    let stats = lazy.cut().unwrap();

    assert!(!is_mounted(&dirs.mnt));
    assert_eq!(dirs.backing_names(), ["kept"]);
    assert_eq!(fs::read(dirs.backing("kept")).unwrap(), kept);
    assert_eq!((stats.file_syncs, stats.dir_syncs), (1, 1));
    assert_eq!(stats.bytes_made_durable, kept.len() as u64);
    assert_eq!(stats.entries_made_durable, 1);
    assert_eq!(stats.entries_discarded, 1);
    assert_eq!(stats.files_discarded, 1);
    assert_eq!(stats.bytes_discarded, 13);

    let _lazy = dirs.mount();
    assert_eq!(fs::read(dirs.mnt("kept")).unwrap(), kept);
    assert!(!dirs.mnt("lost").exists());
}

#[test]
fn a_file_fsynced_in_a_directory_never_fsynced_is_lost() {
    let dirs = Dirs::new();
    let lazy = dirs.mount();
    write_synced(&dirs.mnt("orphan"), b"content durable, name not");
    fs::create_dir(dirs.mnt("sub")).unwrap();
    write_synced(&dirs.mnt("sub/inner"), b"inner");
    sync_dir(&dirs.mnt("sub"));
    lazy.cut().unwrap();
    assert!(
        dirs.backing_names().is_empty(),
        "{:?}",
        dirs.backing_names()
    );

    let lazy = dirs.mount();
    fs::create_dir(dirs.mnt("sub")).unwrap();
    write_synced(&dirs.mnt("sub/inner"), b"inner");
    sync_dir(&dirs.mnt("sub"));
    sync_dir(&dirs.mnt);
    lazy.cut().unwrap();
    assert_eq!(fs::read(dirs.backing("sub/inner")).unwrap(), b"inner");
}

#[test]
fn a_rename_is_undone_by_a_cut_unless_its_directory_was_fsynced() {
    let dirs = Dirs::new();
    fs::write(dirs.backing("config"), b"old").unwrap();

    // temp + fsync + rename, no fsync of the directory: the old file is what remains.
    let lazy = dirs.mount();
    write_synced(&dirs.mnt("config.tmp"), b"new");
    fs::rename(dirs.mnt("config.tmp"), dirs.mnt("config")).unwrap();
    assert_eq!(fs::read(dirs.mnt("config")).unwrap(), b"new");
    lazy.cut().unwrap();
    assert_eq!(dirs.backing_names(), ["config"]);
    assert_eq!(fs::read(dirs.backing("config")).unwrap(), b"old");

    // The whole pattern: temp + fsync + rename + fsync of the directory survives.
    let lazy = dirs.mount();
    write_synced(&dirs.mnt("config.tmp"), b"new");
    fs::rename(dirs.mnt("config.tmp"), dirs.mnt("config")).unwrap();
    sync_dir(&dirs.mnt);
    lazy.cut().unwrap();
    assert_eq!(dirs.backing_names(), ["config"]);
    assert_eq!(fs::read(dirs.backing("config")).unwrap(), b"new");
}

#[test]
fn a_name_made_durable_before_the_content_comes_back_empty() {
    let dirs = Dirs::new();
    let lazy = dirs.mount();
    fs::write(dirs.mnt("config.tmp"), b"new, never fsynced").unwrap();
    fs::rename(dirs.mnt("config.tmp"), dirs.mnt("config")).unwrap();
    sync_dir(&dirs.mnt);
    lazy.cut().unwrap();
    // The classic zero-length file after a crash.
    assert_eq!(fs::read(dirs.backing("config")).unwrap(), b"");
}

#[test]
fn an_unlink_or_rmdir_without_fsync_of_the_directory_comes_back() {
    let dirs = Dirs::new();
    fs::write(dirs.backing("victim"), b"still here").unwrap();
    fs::create_dir(dirs.backing("empty")).unwrap();
    let lazy = dirs.mount();
    fs::remove_file(dirs.mnt("victim")).unwrap();
    fs::remove_dir(dirs.mnt("empty")).unwrap();
    assert!(!dirs.mnt("victim").exists());
    let stats = lazy.cut().unwrap();
    assert_eq!(stats.entries_discarded, 2);
    assert_eq!(dirs.backing_names(), ["empty", "victim"]);
    assert_eq!(fs::read(dirs.backing("victim")).unwrap(), b"still here");

    let lazy = dirs.mount();
    fs::remove_file(dirs.mnt("victim")).unwrap();
    fs::remove_dir(dirs.mnt("empty")).unwrap();
    sync_dir(&dirs.mnt);
    lazy.cut().unwrap();
    assert!(dirs.backing_names().is_empty());
}

#[test]
fn truncations_and_writes_at_offsets_after_the_last_fsync_are_undone() {
    let dirs = Dirs::new();
    let original: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    fs::write(dirs.backing("data"), &original).unwrap();
    fs::set_permissions(dirs.backing("data"), fs::Permissions::from_mode(0o640)).unwrap();
    let lazy = dirs.mount();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dirs.mnt("data"))
        .unwrap();
    file.set_len(1000).unwrap();
    file.write_all_at(b"middle", 500).unwrap();
    file.write_all_at(b"far away", 5_000_000).unwrap(); // sparse growth
    fs::set_permissions(dirs.mnt("data"), fs::Permissions::from_mode(0o600)).unwrap();
    let mut seen = vec![0; 8];
    file.read_exact_at(&mut seen, 5_000_000).unwrap();
    assert_eq!(&seen, b"far away");
    assert_eq!(file.metadata().unwrap().len(), 5_000_008);
    drop(file);
    lazy.cut().unwrap();
    assert_eq!(fs::read(dirs.backing("data")).unwrap(), original);
    let mode = fs::metadata(dirs.backing("data"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}

#[test]
fn writes_fsynced_at_offsets_survive_and_later_ones_do_not() {
    let dirs = Dirs::new();
    fs::write(dirs.backing("data"), b"0123456789").unwrap();
    let lazy = dirs.mount();
    let file = OpenOptions::new()
        .write(true)
        .open(dirs.mnt("data"))
        .unwrap();
    file.write_all_at(b"ab", 3).unwrap();
    file.write_all_at(b"zz", 12).unwrap();
    file.sync_data().unwrap();
    file.write_all_at(b"LOST", 0).unwrap();
    file.set_len(4).unwrap();
    drop(file);
    lazy.cut().unwrap();
    assert_eq!(fs::read(dirs.backing("data")).unwrap(), b"012ab56789\0\0zz");
}

#[test]
fn a_rename_between_directories_is_durable_in_each_only_once_it_is_fsynced() {
    let dirs = Dirs::new();
    fs::create_dir(dirs.backing("from")).unwrap();
    fs::create_dir(dirs.backing("to")).unwrap();
    fs::write(dirs.backing("from/file"), b"moved").unwrap();
    let lazy = dirs.mount();
    fs::rename(dirs.mnt("from/file"), dirs.mnt("to/file")).unwrap();
    sync_dir(&dirs.mnt("to"));
    lazy.cut().unwrap();
    // Only the target was fsynced: the model keeps both names (a real journal would not).
    assert_eq!(fs::read(dirs.backing("from/file")).unwrap(), b"moved");
    assert_eq!(fs::read(dirs.backing("to/file")).unwrap(), b"moved");
}

#[test]
fn directories_that_name_each_other_in_the_durable_tree_are_written_once_per_path() {
    let dirs = Dirs::new();
    fs::create_dir(dirs.backing("x")).unwrap();
    fs::create_dir(dirs.backing("y")).unwrap();
    let lazy = dirs.mount();
    fs::rename(dirs.mnt("y"), dirs.mnt("x/y")).unwrap();
    sync_dir(&dirs.mnt("x"));
    fs::rename(dirs.mnt("x/y"), dirs.mnt("y")).unwrap();
    fs::rename(dirs.mnt("x"), dirs.mnt("y/x")).unwrap();
    sync_dir(&dirs.mnt("y"));
    // Durable: the root names x and y (never fsynced), x names y and y names x.
    lazy.cut().unwrap();
    assert!(dirs.backing("x/y").is_dir() && dirs.backing("y/x").is_dir());
    assert!(!dirs.backing("x/y/x").exists() && !dirs.backing("y/x/y").exists());
}

#[test]
fn a_clean_unmount_keeps_everything() {
    let dirs = Dirs::new();
    fs::write(dirs.backing("old"), b"old").unwrap();
    let lazy = dirs.mount();
    fs::write(dirs.mnt("new"), b"never fsynced").unwrap();
    fs::create_dir_all(dirs.mnt("a/b")).unwrap();
    fs::write(dirs.mnt("a/b/deep"), b"deep").unwrap();
    fs::rename(dirs.mnt("old"), dirs.mnt("renamed")).unwrap();
    let stats = lazy.unmount().unwrap();
    assert_eq!((stats.file_syncs, stats.dir_syncs), (0, 0));
    assert!(!is_mounted(&dirs.mnt));
    assert_eq!(dirs.backing_names(), ["a", "new", "renamed"]);

    let lazy = dirs.mount();
    assert_eq!(fs::read(dirs.mnt("a/b/deep")).unwrap(), b"deep");
    assert_eq!(fs::read(dirs.mnt("renamed")).unwrap(), b"old");
    lazy.cut().unwrap();
    assert_eq!(fs::read(dirs.backing("new")).unwrap(), b"never fsynced");
}

#[test]
fn dropping_the_handle_cuts_the_power_and_leaves_no_mount() {
    let dirs = Dirs::new();
    {
        let _lazy = dirs.mount();
        fs::write(dirs.mnt("lost"), b"x").unwrap();
    }
    assert!(!is_mounted(&dirs.mnt));
    assert!(dirs.backing_names().is_empty());
}

#[test]
fn a_cut_with_files_still_open_unmounts_and_later_io_fails() {
    let dirs = Dirs::new();
    let lazy = dirs.mount();
    let mut file = File::create(dirs.mnt("open")).unwrap();
    file.write_all(b"before").unwrap();
    sync_dir(&dirs.mnt);
    lazy.cut().unwrap();
    assert!(!is_mounted(&dirs.mnt));
    assert!(file.write_all(b"after the cut").is_err());
    assert!(file.sync_all().is_err());
    drop(file);
    assert_eq!(fs::read(dirs.backing("open")).unwrap(), b"");
}

#[test]
fn mount_cut_and_remount_take_milliseconds() {
    let dirs = Dirs::new();
    for i in 0..20 {
        fs::write(dirs.backing(&format!("file{i}")), vec![i as u8; 50_000]).unwrap();
    }
    let start = Instant::now();
    let lazy = dirs.mount();
    let mounted = start.elapsed();
    write_synced(&dirs.mnt("file0"), b"changed");
    let start = Instant::now();
    lazy.cut().unwrap();
    let cut = start.elapsed();
    let start = Instant::now();
    let _lazy = dirs.mount();
    let remounted = start.elapsed();
    assert_eq!(fs::read(dirs.mnt("file0")).unwrap(), b"changed");
    eprintln!("lazyfs, 20 files of 50 kB: mount {mounted:?}, cut {cut:?}, remount {remounted:?}");
}
