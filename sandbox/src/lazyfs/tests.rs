//! The model without FUSE: link counts, freeing, renames, what a cut counts as lost.

use std::ffi::OsStr;

use fuser::{Errno, RenameFlags};

use super::tree::{Body, Ino, Meta, ROOT, Tree};

fn tree() -> Tree {
    Tree::new(Meta::new(0o755, 0, 0))
}

fn create(tree: &mut Tree, parent: Ino, name: &str, dir: bool) -> Ino {
    let ino = tree
        .create(parent, OsStr::new(name), Meta::new(0o644, 0, 0), dir)
        .unwrap();
    tree.node_mut(ino).unwrap().lookups += 1; // as the kernel holds it after create
    ino
}

fn forget(tree: &mut Tree, ino: Ino) {
    tree.node_mut(ino).unwrap().lookups = 0;
    tree.release(ino);
}

fn durable(tree: &Tree, ino: Ino) -> Vec<u8> {
    match &tree.node(ino).unwrap().body {
        Body::File { durable, .. } => durable.read(0, usize::MAX),
        Body::Dir { .. } => panic!("a directory"),
    }
}

#[test]
fn a_node_is_freed_once_no_entry_names_it_and_the_kernel_forgot_it() {
    let mut tree = tree();
    let file = create(&mut tree, ROOT, "file", false);
    tree.sync_dir(ROOT).unwrap();
    tree.remove(ROOT, OsStr::new("file"), false).unwrap();
    forget(&mut tree, file);
    assert!(tree.node(file).is_ok(), "its durable entry still names it");
    tree.sync_dir(ROOT).unwrap();
    assert_eq!(tree.node(file).unwrap_err(), Errno::ENOENT);
    assert_eq!(tree.nodes().count(), 1);
}

#[test]
fn a_freed_directory_releases_what_its_durable_entries_named() {
    let mut tree = tree();
    let dir = create(&mut tree, ROOT, "dir", true);
    let file = create(&mut tree, dir, "file", false);
    tree.sync_dir(dir).unwrap();
    tree.remove(dir, OsStr::new("file"), false).unwrap();
    tree.remove(ROOT, OsStr::new("dir"), true).unwrap();
    forget(&mut tree, file);
    assert!(tree.node(file).is_ok(), "dir's durable entry names it");
    forget(&mut tree, dir);
    assert_eq!(tree.nodes().count(), 1);
}

#[test]
fn renames_replace_exchange_or_refuse() {
    let mut tree = tree();
    let a = create(&mut tree, ROOT, "a", false);
    let b = create(&mut tree, ROOT, "b", false);
    let dir = create(&mut tree, ROOT, "dir", true);
    let name = |name| (ROOT, OsStr::new(name));
    let exchange = RenameFlags::RENAME_EXCHANGE;
    tree.rename(name("a"), name("b"), exchange).unwrap();
    assert_eq!(
        (
            tree.child(ROOT, "a".as_ref()),
            tree.child(ROOT, "b".as_ref())
        ),
        (Ok(b), Ok(a))
    );
    let no_replace = RenameFlags::RENAME_NOREPLACE;
    assert_eq!(
        tree.rename(name("a"), name("b"), no_replace),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        tree.rename(name("a"), name("dir"), RenameFlags::empty()),
        Err(Errno::EISDIR)
    );
    assert_eq!(
        tree.rename(name("dir"), name("a"), RenameFlags::empty()),
        Err(Errno::ENOTDIR)
    );
    tree.rename(name("a"), name("b"), RenameFlags::empty())
        .unwrap();
    assert_eq!(tree.node(a).unwrap().cached_links, 0, "replaced");
    assert_eq!(tree.node(b).unwrap().cached_links, 1);
    forget(&mut tree, a);
    assert!(tree.node(a).is_err());
    assert!(tree.node(dir).is_ok());
}

#[test]
fn fsync_copies_the_content_and_later_writes_stay_cached() {
    let mut tree = tree();
    let file = create(&mut tree, ROOT, "file", false);
    tree.write(file, 0, b"hello").unwrap();
    tree.sync_file(file).unwrap();
    tree.write(file, 5, b" world").unwrap();
    tree.set_len(file, 2).unwrap();
    assert_eq!(durable(&tree, file), b"hello");
    assert_eq!(tree.content(file).unwrap().read(0, 100), b"he");
    assert_eq!(tree.write(file, u64::MAX, b"x"), Err(Errno::EFBIG));
    let stats = tree.stats;
    assert_eq!(
        (
            stats.file_syncs,
            stats.files_made_durable,
            stats.bytes_made_durable
        ),
        (1, 1, 5)
    );
}

#[test]
fn a_cut_counts_unsynced_bytes_unreachable_files_and_changed_entries() {
    let mut tree = tree();
    let synced = create(&mut tree, ROOT, "synced", false);
    tree.write(synced, 0, b"12345").unwrap();
    tree.sync_file(synced).unwrap();
    tree.sync_dir(ROOT).unwrap();
    tree.write(synced, 5, b"678").unwrap();
    let orphan = create(&mut tree, ROOT, "orphan", false);
    tree.write(orphan, 0, b"abcdefghij").unwrap();
    tree.sync_file(orphan).unwrap();
    tree.count_discarded();
    let stats = tree.stats;
    assert_eq!(stats.files_discarded, 2);
    assert_eq!(stats.bytes_discarded, 3 + 10);
    assert_eq!(stats.entries_discarded, 1);
}

#[test]
fn a_clean_shutdown_makes_everything_durable() {
    let mut tree = tree();
    let dir = create(&mut tree, ROOT, "dir", true);
    let file = create(&mut tree, dir, "file", false);
    tree.write(file, 0, b"data").unwrap();
    tree.sync_all().unwrap();
    assert_eq!(
        tree.durable_entries(ROOT).unwrap().get(OsStr::new("dir")),
        Some(&dir)
    );
    assert_eq!(
        tree.durable_entries(dir).unwrap().get(OsStr::new("file")),
        Some(&file)
    );
    assert_eq!(durable(&tree, file), b"data");
    tree.count_discarded();
    assert_eq!(tree.stats.files_discarded + tree.stats.entries_discarded, 0);
}
