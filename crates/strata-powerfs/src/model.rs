//! [`Model`]: a file system as a page cache sees it, with what a power loss would keep.
//!
//! Every node has a *current* state (what reads see) and a *durable* state (what survives
//! a power loss):
//! - a file's data and size become durable when the file is `fsync`ed or `fdatasync`ed;
//!   until then its writes and size changes wait, in order, in a pending list;
//! - a directory's entries (creations, renames and unlinks of names in it) become durable
//!   when the directory itself is `fsync`ed — POSIX-strict: syncing a file does not make
//!   its name durable, and a rename between two directories needs both synced.
//!
//! [`Model::power_off`] throws away everything volatile: every directory gets its durable
//! entries back, every file its durable data; nodes no durable name reaches are gone. With
//! tearing, each file keeps a random prefix of its pending writes, the last of them cut at
//! a random byte — what a disk that wrote back some pages before the power failed leaves.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};

use rand::RngExt;

/// The root directory's node id (FUSE's root inode).
pub const ROOT: u64 = 1;

/// What an operation can fail with: a POSIX errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// No such file or directory.
    pub const ENOENT: Errno = Errno(2);
    /// I/O error (an operation the power cut).
    pub const EIO: Errno = Errno(5);
    /// The name exists.
    pub const EEXIST: Errno = Errno(17);
    /// Not a directory.
    pub const ENOTDIR: Errno = Errno(20);
    /// Is a directory.
    pub const EISDIR: Errno = Errno(21);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(22);
    /// Directory not empty.
    pub const ENOTEMPTY: Errno = Errno(39);
}

/// A node's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// What [`Model::getattr`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Node id.
    pub ino: u64,
    /// File or directory.
    pub kind: Kind,
    /// Size in bytes (files).
    pub size: u64,
    /// Permission bits.
    pub mode: u16,
    /// Names that refer to it now.
    pub nlink: u32,
    /// A counter bumped by every change, for modification times.
    pub version: u64,
}

/// A change to a file's data that is not durable yet.
#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    mode: u16,
    version: u64,
    data: Vec<u8>,
    durable_data: Vec<u8>,
    pending: Vec<Pending>,
    entries: BTreeMap<OsString, u64>,
    durable_entries: BTreeMap<OsString, u64>,
    /// Names that refer to it in current directory entries.
    links: u32,
    /// Open handles.
    handles: u32,
}

impl Node {
    fn new(kind: Kind, mode: u16, version: u64) -> Self {
        Self {
            kind,
            mode,
            version,
            data: Vec::new(),
            durable_data: Vec::new(),
            pending: Vec::new(),
            entries: BTreeMap::new(),
            durable_entries: BTreeMap::new(),
            links: 0,
            handles: 0,
        }
    }
}

/// What a power loss threw away.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerOffReport {
    /// Files that had writes or size changes not yet synced.
    pub files_with_unsynced_data: usize,
    /// Of those, files that kept a torn prefix of them.
    pub torn_files: usize,
    /// Directories whose entries had changed since their last sync.
    pub dirs_with_unsynced_entries: usize,
    /// Nodes no durable name reached, dropped.
    pub nodes_dropped: usize,
}

/// The file system: nodes by id, each with its current and durable state.
#[derive(Debug)]
pub struct Model {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    version: u64,
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

fn apply(data: &mut Vec<u8>, pending: &Pending) {
    match pending {
        Pending::Write { offset, bytes } => {
            let offset = usize::try_from(*offset).unwrap_or(usize::MAX);
            let end = offset.saturating_add(bytes.len());
            if data.len() < end {
                data.resize(end, 0);
            }
            data[offset..end].copy_from_slice(bytes);
        }
        Pending::SetLen(len) => data.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0),
    }
}

impl Model {
    /// An empty file system: a root directory, durable.
    pub fn new() -> Self {
        let mut root = Node::new(Kind::Dir, 0o755, 0);
        root.links = 1;
        Self {
            nodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            version: 0,
        }
    }

    fn node(&self, ino: u64) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir(&self, ino: u64) -> Result<&Node, Errno> {
        let node = self.node(ino)?;
        match node.kind {
            Kind::Dir => Ok(node),
            Kind::File => Err(Errno::ENOTDIR),
        }
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut Node, Errno> {
        let node = self.node_mut(ino)?;
        match node.kind {
            Kind::File => Ok(node),
            Kind::Dir => Err(Errno::EISDIR),
        }
    }

    fn bump(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    /// The node `name` in directory `parent` names now.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.dir(parent)?
            .entries
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    /// A node's attributes.
    pub fn getattr(&self, ino: u64) -> Result<Attr, Errno> {
        let node = self.node(ino)?;
        Ok(Attr {
            ino,
            kind: node.kind,
            size: node.data.len() as u64,
            mode: node.mode,
            nlink: node.links.max(u32::from(node.kind == Kind::Dir)),
            version: node.version,
        })
    }

    /// Current entries of a directory, by name.
    pub fn readdir(&self, ino: u64) -> Result<Vec<(OsString, u64, Kind)>, Errno> {
        Ok(self
            .dir(ino)?
            .entries
            .iter()
            .map(|(name, &child)| {
                let kind = self.nodes.get(&child).map_or(Kind::File, |n| n.kind);
                (name.clone(), child, kind)
            })
            .collect())
    }

    fn add_node(&mut self, parent: u64, name: &OsStr, kind: Kind, mode: u16) -> Result<u64, Errno> {
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let version = self.bump();
        let mut node = Node::new(kind, mode, version);
        node.links = 1;
        self.nodes.insert(ino, node);
        let dir = self.node_mut(parent)?;
        dir.entries.insert(name.to_os_string(), ino);
        dir.version = version;
        Ok(ino)
    }

    /// Creates an empty file `name` in `parent` (an error if the name exists).
    pub fn create(&mut self, parent: u64, name: &OsStr, mode: u16) -> Result<u64, Errno> {
        self.add_node(parent, name, Kind::File, mode)
    }

    /// Creates an empty directory `name` in `parent`.
    pub fn mkdir(&mut self, parent: u64, name: &OsStr, mode: u16) -> Result<u64, Errno> {
        self.add_node(parent, name, Kind::Dir, mode)
    }

    /// Removes the name of a file.
    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        if self.node(ino)?.kind == Kind::Dir {
            return Err(Errno::EISDIR);
        }
        self.remove_entry(parent, name, ino)
    }

    /// Removes an empty directory.
    pub fn rmdir(&mut self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        let node = self.dir(ino)?;
        if !node.entries.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.remove_entry(parent, name, ino)
    }

    fn remove_entry(&mut self, parent: u64, name: &OsStr, ino: u64) -> Result<(), Errno> {
        let version = self.bump();
        let dir = self.node_mut(parent)?;
        dir.entries.remove(name);
        dir.version = version;
        let node = self.node_mut(ino)?;
        node.links = node.links.saturating_sub(1);
        self.forget_if_unused(ino);
        Ok(())
    }

    /// Renames `parent/name` to `new_parent/new_name`, replacing a file (or an empty
    /// directory) there; with `no_replace`, an existing target is an error.
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        self.dir(new_parent)?;
        if parent == new_parent && name == new_name {
            return Ok(());
        }
        let kind = self.node(ino)?.kind;
        if let Ok(old) = self.lookup(new_parent, new_name) {
            if no_replace {
                return Err(Errno::EEXIST);
            }
            let old_node = self.node(old)?;
            match (kind, old_node.kind) {
                (Kind::File, Kind::Dir) => return Err(Errno::EISDIR),
                (Kind::Dir, Kind::File) => return Err(Errno::ENOTDIR),
                (Kind::Dir, Kind::Dir) if !old_node.entries.is_empty() => {
                    return Err(Errno::ENOTEMPTY);
                }
                _ => {}
            }
            self.remove_entry(new_parent, new_name, old)?;
        }
        let version = self.bump();
        let from = self.node_mut(parent)?;
        from.entries.remove(name);
        from.version = version;
        let to = self.node_mut(new_parent)?;
        to.entries.insert(new_name.to_os_string(), ino);
        to.version = version;
        Ok(())
    }

    /// Reads up to `size` bytes at `offset`.
    pub fn read(&self, ino: u64, offset: u64, size: usize) -> Result<&[u8], Errno> {
        let node = self.node(ino)?;
        if node.kind == Kind::Dir {
            return Err(Errno::EISDIR);
        }
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(node.data.len());
        let end = start.saturating_add(size).min(node.data.len());
        Ok(&node.data[start..end])
    }

    /// Writes `bytes` at `offset` (extending the file with zeros if needed).
    pub fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<usize, Errno> {
        let version = self.bump();
        let node = self.file_mut(ino)?;
        let change = Pending::Write {
            offset,
            bytes: bytes.to_vec(),
        };
        apply(&mut node.data, &change);
        node.pending.push(change);
        node.version = version;
        Ok(bytes.len())
    }

    /// Sets a file's size (cutting or extending with zeros).
    pub fn set_len(&mut self, ino: u64, len: u64) -> Result<(), Errno> {
        let version = self.bump();
        let node = self.file_mut(ino)?;
        let change = Pending::SetLen(len);
        apply(&mut node.data, &change);
        node.pending.push(change);
        node.version = version;
        Ok(())
    }

    /// Sets a node's permission bits.
    pub fn chmod(&mut self, ino: u64, mode: u16) -> Result<(), Errno> {
        let version = self.bump();
        let node = self.node_mut(ino)?;
        node.mode = mode;
        node.version = version;
        Ok(())
    }

    /// `fsync` / `fdatasync` of a file: its data and size become durable (not its name).
    /// Of a directory: its entries become durable.
    pub fn fsync(&mut self, ino: u64) -> Result<(), Errno> {
        let node = self.node_mut(ino)?;
        match node.kind {
            Kind::File => {
                for change in std::mem::take(&mut node.pending) {
                    apply(&mut node.durable_data, &change);
                }
            }
            Kind::Dir => node.durable_entries = node.entries.clone(),
        }
        Ok(())
    }

    /// A handle to `ino` was opened.
    pub fn open(&mut self, ino: u64) -> Result<(), Errno> {
        self.node_mut(ino)?.handles += 1;
        Ok(())
    }

    /// A handle to `ino` was closed.
    pub fn release(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.handles = node.handles.saturating_sub(1);
        }
        self.forget_if_unused(ino);
    }

    /// A node no current name and no handle refers to can no longer change: its current
    /// state goes (what is durable stays until the next power-off decides).
    fn forget_if_unused(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino)
            && node.links == 0
            && node.handles == 0
            && ino != ROOT
        {
            node.data = Vec::new();
            node.pending.clear();
        }
    }

    /// Whether anything is not durable yet.
    pub fn has_unsynced(&self) -> bool {
        self.nodes.values().any(|n| match n.kind {
            Kind::File => !n.pending.is_empty(),
            Kind::Dir => n.entries != n.durable_entries,
        })
    }

    /// The power fails: everything not durable is lost. With `tear`, each file with
    /// pending changes keeps a random prefix of them, the last write cut at a random byte.
    pub fn power_off(&mut self, mut tear: Option<&mut impl rand::Rng>) -> PowerOffReport {
        let mut report = PowerOffReport::default();
        for node in self.nodes.values_mut() {
            match node.kind {
                Kind::File => {
                    if !node.pending.is_empty() {
                        report.files_with_unsynced_data += 1;
                        if let Some(rng) = tear.as_deref_mut() {
                            let kept = rng.random_range(0..=node.pending.len());
                            for change in &node.pending[..kept] {
                                apply(&mut node.durable_data, change);
                            }
                            let mut cut = 0;
                            if let Some(Pending::Write { offset, bytes }) = node.pending.get(kept)
                                && !bytes.is_empty()
                            {
                                cut = rng.random_range(0..bytes.len());
                                let torn = Pending::Write {
                                    offset: *offset,
                                    bytes: bytes[..cut].to_vec(),
                                };
                                apply(&mut node.durable_data, &torn);
                            }
                            report.torn_files += usize::from(kept > 0 || cut > 0);
                        }
                        node.pending.clear();
                    }
                    node.data = node.durable_data.clone();
                }
                Kind::Dir => {
                    if node.entries != node.durable_entries {
                        report.dirs_with_unsynced_entries += 1;
                    }
                    node.entries = node.durable_entries.clone();
                }
            }
            node.handles = 0;
            node.links = 0;
        }
        // Keep what a durable name reaches from the root; count the names again.
        let mut reached = std::collections::HashSet::from([ROOT]);
        let mut queue = vec![ROOT];
        while let Some(ino) = queue.pop() {
            let children: Vec<u64> = self
                .nodes
                .get(&ino)
                .map(|n| n.entries.values().copied().collect())
                .unwrap_or_default();
            for child in children {
                if let Some(node) = self.nodes.get_mut(&child) {
                    node.links += 1;
                    if reached.insert(child) {
                        queue.push(child);
                    }
                }
            }
        }
        let before = self.nodes.len();
        self.nodes.retain(|ino, _| reached.contains(ino));
        report.nodes_dropped = before - self.nodes.len();
        if let Some(root) = self.nodes.get_mut(&ROOT) {
            root.links = 1;
        }
        report
    }
}

#[cfg(test)]
mod tests;
