//! C2SP `tlog-tiles` (SPEC §8): the log's Merkle tree and entries as static resources.
//!
//! A monitor, auditor or mirror fetches the tree as *tiles*, 256 consecutive hashes of one
//! tree level each, and the entries as *bundles* of 256, every one of them immutable once the
//! log has grown past it: a static web server, a CDN or an object store can serve them
//! unchanged, and a client computes any proof it needs from them. This module is the format
//! alone: paths, which tiles a tree of a given size has, the bytes of a tile (read through a
//! [`HashReader`]) and of an entry bundle. No I/O.
//!
//! - Tile `tile/<L>/<N>` holds the hashes of tree level `8·L`, indices `N·256 .. N·256+255`:
//!   at level 0 the leaf hashes, above them the roots of full tiles of the level below.
//! - `<N>` is written in 3-digit groups, all but the last prefixed with `x`
//!   (1234067 → `x001/x234/067`), so that a file system holds the tiles without a file and a
//!   directory of the same name.
//! - A *partial* tile, the rightmost of a level, has a width `W` of 1 to 255 and the path
//!   suffix `.p/<W>`; its hashes are the first `W` of the full tile it grows into.
//! - Bundle `tile/entries/<N>[.p/<W>]` holds entries `N·256 ..` as big-endian `u16`
//!   length-prefixed byte strings (SPEC §4 caps an entry at 65,535 bytes for this reason).

use crate::c2sp::decimal;
use crate::merkle::{self, Hash, HashReader, NodeId, ReadError};
use std::ops::Range;

/// Hashes in a full tile, entries in a full bundle.
pub const WIDTH: u64 = 256;

/// Tree levels one tile level spans: `log2(WIDTH)`.
pub const HEIGHT: u8 = 8;

/// The highest tile level a path may name (tlog-tiles: 0 to 63). Only levels up to 7 can
/// exist in a tree of at most 2^64 − 1 entries.
pub const MAX_LEVEL: u8 = 63;

/// The largest entry an entry bundle can carry (its length prefix is a `u16`).
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;

/// Why a tile path, a bundle or a bundle's entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    /// The path is not one tlog-tiles defines (or not in its one canonical spelling).
    #[error(
        "{path:?} is not a tlog-tiles path: {why} (expected tile/<L>/<N>[.p/<W>] or \
         tile/entries/<N>[.p/<W>], e.g. tile/0/x001/234 or tile/entries/005.p/17)"
    )]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An entry too large for a bundle's 16-bit length prefix.
    #[error("entry of {0} bytes does not fit an entry bundle (at most 65,535 bytes)")]
    EntryTooLarge(usize),
    /// Bundle bytes that do not split into length-prefixed entries.
    #[error("entry bundle is malformed: {0}")]
    BadBundle(&'static str),
}

/// What a tile path names: hashes of one tile level, or entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TileKind {
    /// A Merkle tile of this tile level (0 = leaf hashes).
    Hashes(u8),
    /// An entry bundle.
    Entries,
}

/// Bytes per entry in a seal tile ([`Tile::seal_path`]): the 64-byte seal signature of a
/// certificate entry, zeros for any other entry (and for a certificate whose seal the tile's
/// writer does not hold, which a reader then asks the ledger's API for).
pub const SEAL_BYTES: usize = 64;

/// One tlog-tiles resource: a Merkle tile or an entry bundle, full (`width` 256) or partial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    /// Hashes or entries.
    pub kind: TileKind,
    /// The tile's index within its level.
    pub index: u64,
    /// Hashes or entries it holds: 256 for a full tile, 1 to 255 for a partial one.
    pub width: u16,
}

impl Tile {
    /// Parses a path relative to the log's prefix, starting at `tile/` (a leading `/` is
    /// allowed). Only the canonical spelling is accepted: no leading zeros in `<L>` or `<W>`,
    /// no leading `x000` group in `<N>`, `<W>` from 1 to 255, `<L>` at most 63.
    pub fn parse(path: &str) -> Result<Tile, TileError> {
        let bad = |why| TileError::BadPath {
            path: path.to_owned(),
            why,
        };
        let rest = path
            .strip_prefix('/')
            .unwrap_or(path)
            .strip_prefix("tile/")
            .ok_or_else(|| bad("it does not start with tile/"))?;
        let (rest, width) = match rest.split_once(".p/") {
            None => (rest, WIDTH as u16),
            Some((rest, w)) => {
                let w = decimal(w)
                    .filter(|w| (1..WIDTH).contains(w))
                    .ok_or_else(|| bad("a partial width is 1 to 255, without leading zeros"))?;
                (rest, w as u16)
            }
        };
        let (first, index) = rest
            .split_once('/')
            .ok_or_else(|| bad("it names no tile index"))?;
        let kind = if first == "entries" {
            TileKind::Entries
        } else {
            let level = decimal(first)
                .filter(|l| *l <= u64::from(MAX_LEVEL))
                .ok_or_else(|| bad("a level is 0 to 63, without leading zeros"))?;
            TileKind::Hashes(level as u8)
        };
        let index = parse_index(index).ok_or_else(|| {
            bad("an index is groups of 3 digits, all but the last prefixed with x, with no leading x000")
        })?;
        Ok(Tile { kind, index, width })
    }

    /// The path relative to the log's prefix, e.g. `tile/0/x001/234.p/5`: the URL path
    /// without its leading `/`, and the file's path in an exported directory.
    pub fn path(&self) -> String {
        let kind = match self.kind {
            TileKind::Hashes(level) => level.to_string(),
            TileKind::Entries => "entries".to_owned(),
        };
        let mut p = format!("tile/{kind}/{}", index_path(self.index));
        if u64::from(self.width) < WIDTH {
            p.push_str(&format!(".p/{}", self.width));
        }
        p
    }

    /// The path of the seal tile beside an entry bundle, e.g. `seals/x001/234.p/5`: this
    /// ledger's addition to the tiles (SPEC §5 seals are not part of the entries), so that a
    /// mirror, even of a static copy, serves the seals of the certificates it follows.
    pub fn seal_path(&self) -> String {
        let mut p = format!("seals/{}", index_path(self.index));
        if u64::from(self.width) < WIDTH {
            p.push_str(&format!(".p/{}", self.width));
        }
        p
    }

    /// Whether this is a full tile (256 wide), the same forever once the log has it.
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == WIDTH
    }

    /// The tree level its hashes are at (`8·L`), or `None` for a bundle or a level beyond
    /// any tree.
    fn tree_level(&self) -> Option<u8> {
        match self.kind {
            TileKind::Hashes(level) if level < 64 / HEIGHT => Some(level * HEIGHT),
            _ => None,
        }
    }

    /// The indices, at its own tree level, of the hashes (or entries) it holds; `None` for a
    /// width outside 1..=256 (a `Tile` built by hand) or past `u64`.
    fn span(&self) -> Option<Range<u64>> {
        if !(1..=WIDTH).contains(&u64::from(self.width)) {
            return None;
        }
        let start = self.index.checked_mul(WIDTH)?;
        Some(start..start.checked_add(u64::from(self.width))?)
    }

    /// Whether a tree of `size` entries has everything this tile holds: its last hash is of
    /// a complete subtree (or its last entry is logged). A partial tile of any width up to
    /// what the tree has is its own prefix of the full tile, so it is served too.
    pub fn is_in(&self, size: u64) -> bool {
        let Some(span) = self.span() else {
            return false;
        };
        match self.kind {
            TileKind::Entries => span.end <= size,
            TileKind::Hashes(_) => self
                .tree_level()
                .is_some_and(|level| NodeId::new(level, span.end - 1).is_complete_in(size)),
        }
    }

    /// How many of this tile's hashes (or entries) a tree of `size` entries has, at most its
    /// width: the width of the partial tile to ask for instead.
    pub fn available_width(&self, size: u64) -> u64 {
        let count = match self.kind {
            TileKind::Entries => size,
            TileKind::Hashes(_) => self.tree_level().map_or(0, |level| size >> level),
        };
        let start = self.index.saturating_mul(WIDTH);
        count.saturating_sub(start).min(u64::from(self.width))
    }

    /// The entry indices of a bundle (for a Merkle tile: of the leaves of level 0 it would
    /// hold), or `None` past `u64`.
    pub fn entries(&self) -> Option<Range<u64>> {
        self.span()
    }
}

/// `x001/x234/067` → 1234067; `None` unless canonical.
fn parse_index(s: &str) -> Option<u64> {
    let groups: Vec<&str> = s.split('/').collect();
    let last = groups.len() - 1;
    let mut n: u64 = 0;
    for (i, g) in groups.iter().enumerate() {
        let digits = if i < last { g.strip_prefix('x')? } else { g };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if i == 0 && i < last && digits == "000" {
            return None;
        }
        n = n.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
    }
    Some(n)
}

/// The `<N>` of a tile path: 1234067 → `x001/x234/067`, 5 → `005`.
pub fn index_path(n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    let mut rest = n / 1000;
    while rest > 0 {
        groups.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

/// Every tile and bundle a tree of `size` entries has: the full ones and, where a level does
/// not end on a tile boundary, its partial one; level by level, bundles last. This is what a
/// static copy of the log at that size holds.
pub fn tiles_of(size: u64) -> Vec<Tile> {
    let mut out = Vec::new();
    let mut level: u8 = 0;
    // Complete subtrees at the tile level's tree level: `size >> 8L`.
    let mut nodes = size;
    while nodes > 0 {
        push_level(&mut out, TileKind::Hashes(level), nodes);
        nodes >>= HEIGHT;
        level += 1;
    }
    push_level(&mut out, TileKind::Entries, size);
    out
}

fn push_level(out: &mut Vec<Tile>, kind: TileKind, count: u64) {
    let full = count / WIDTH;
    out.extend((0..full).map(|index| Tile {
        kind,
        index,
        width: WIDTH as u16,
    }));
    let partial = (count % WIDTH) as u16;
    if partial > 0 {
        out.push(Tile {
            kind,
            index: full,
            width: partial,
        });
    }
}

/// The bytes of Merkle tile `tile` in a tree of `size` entries: its hashes back to back,
/// read through `r`; `None` when the tree does not have it (or `tile` is a bundle).
pub fn tile_bytes<R: HashReader>(
    tile: &Tile,
    size: u64,
    r: &R,
) -> Result<Option<Vec<u8>>, ReadError<R::Error>> {
    let (Some(level), Some(span)) = (tile.tree_level(), tile.span()) else {
        return Ok(None);
    };
    if !tile.is_in(size) {
        return Ok(None);
    }
    let ids: Vec<NodeId> = span.map(|i| NodeId::new(level, i)).collect();
    let hashes = merkle::read_exact(&ids, r)?;
    Ok(Some(hashes.concat()))
}

/// The root of the subtree a full tile's hashes span: the hash the tile level above holds
/// for it. `None` unless `bytes` is exactly 256 hashes.
pub fn tile_root(bytes: &[u8]) -> Option<Hash> {
    if bytes.len() as u64 != WIDTH * 32 {
        return None;
    }
    let mut level: Vec<Hash> = bytes
        .chunks_exact(32)
        .map(|h| h.try_into().ok())
        .collect::<Option<_>>()?;
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|p| merkle::node_hash(&p[0], &p[1]))
            .collect();
    }
    level.first().copied()
}

/// An entry bundle: each entry as a big-endian `u16` length, then its bytes.
pub fn encode_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, TileError> {
    let total = entries.iter().map(|e| 2 + e.as_ref().len()).sum();
    let mut out = Vec::with_capacity(total);
    for e in entries {
        let e = e.as_ref();
        let len = u16::try_from(e.len()).map_err(|_| TileError::EntryTooLarge(e.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// The entries of a bundle, in order. Refuses a truncated length or entry.
pub fn decode_bundle(mut bytes: &[u8]) -> Result<Vec<&[u8]>, TileError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let [a, b, rest @ ..] = bytes else {
            return Err(TileError::BadBundle("it ends inside a length prefix"));
        };
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        if rest.len() < len {
            return Err(TileError::BadBundle("its last entry is cut short"));
        }
        let (entry, rest) = rest.split_at(len);
        out.push(entry);
        bytes = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MemoryTree;

    fn tile(kind: TileKind, index: u64, width: u16) -> Tile {
        Tile { kind, index, width }
    }

    #[test]
    fn index_paths_are_groups_of_three_digits() {
        for (n, p) in [
            (0, "000"),
            (5, "005"),
            (999, "999"),
            (1000, "x001/000"),
            (1_234_067, "x001/x234/067"),
            (u64::MAX, "x018/x446/x744/x073/x709/x551/615"),
        ] {
            assert_eq!(index_path(n), p);
            assert_eq!(parse_index(p), Some(n), "{p}");
        }
    }

    #[test]
    fn paths_round_trip_and_name_what_they_say() {
        let cases = [
            ("tile/0/000", tile(TileKind::Hashes(0), 0, 256)),
            (
                "tile/0/x001/x234/067",
                tile(TileKind::Hashes(0), 1_234_067, 256),
            ),
            ("tile/2/001.p/17", tile(TileKind::Hashes(2), 1, 17)),
            ("tile/63/000.p/1", tile(TileKind::Hashes(63), 0, 1)),
            (
                "tile/entries/x001/000.p/255",
                tile(TileKind::Entries, 1000, 255),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(Tile::parse(path), Ok(want), "{path}");
            assert_eq!(Tile::parse(&format!("/{path}")), Ok(want), "/{path}");
            assert_eq!(want.path(), path);
        }
        for n in (0..5000).chain([999_999, 1_000_000, u64::MAX / 3]) {
            let t = tile(TileKind::Hashes(1), n, 7);
            assert_eq!(Tile::parse(&t.path()), Ok(t));
        }
    }

    #[test]
    fn non_canonical_or_foreign_paths_are_refused() {
        for path in [
            "",
            "tile",
            "tile/",
            "tile/0",
            "tile/0/",
            "tiles/0/000",
            "tile/00/000",
            "tile/01/000",
            "tile/64/000",
            "tile/-1/000",
            "tile/a/000",
            "tile/0/0",
            "tile/0/0000",
            "tile/0/1234",
            "tile/0/x001",
            "tile/0/001/002",
            "tile/0/x1/234",
            "tile/0/x000/005",
            "tile/0/y001/000",
            "tile/0/000/",
            "tile/0/00a",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/010",
            "tile/0/000.p/",
            "tile/0/000.p/5/6",
            "tile/0/000.p/5.p/6",
            "tile/entries/000.p/300",
            "tile/entries",
            "tile/entries/",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/x999/x999/x999/x999/x999/x999/x999/999",
        ] {
            let err = Tile::parse(path).expect_err(path);
            assert!(matches!(err, TileError::BadPath { .. }), "{path}: {err:?}");
            assert!(err.to_string().contains("tile/<L>/<N>"), "{err}");
        }
    }

    #[test]
    fn a_tree_of_70000_has_the_tiles_the_spec_lists() {
        // c2sp.org/tlog-tiles: "273 full level 0 tiles, one partial level 0 tile of width
        // 112, one full level 1 tile, one partial level 1 tile of width 17, and one partial
        // level 2 tile of width 1".
        let tiles = tiles_of(70_000);
        let of = |kind| -> Vec<(u64, u16)> {
            tiles
                .iter()
                .filter(|t| t.kind == kind)
                .map(|t| (t.index, t.width))
                .collect()
        };
        let level0 = of(TileKind::Hashes(0));
        assert_eq!(level0.len(), 274);
        assert!(
            level0[..273]
                .iter()
                .enumerate()
                .all(|(i, &t)| t == (i as u64, 256))
        );
        assert_eq!(level0[273], (273, 112));
        assert_eq!(of(TileKind::Hashes(1)), vec![(0, 256), (1, 17)]);
        assert_eq!(of(TileKind::Hashes(2)), vec![(0, 1)]);
        assert_eq!(of(TileKind::Hashes(3)), vec![]);
        assert_eq!(of(TileKind::Entries), level0);
        // "a tree of size 256 will be represented by a full level 0 tile and a partial
        // level 1 tile of width 1".
        assert_eq!(
            tiles_of(256),
            vec![
                tile(TileKind::Hashes(0), 0, 256),
                tile(TileKind::Hashes(1), 0, 1),
                tile(TileKind::Entries, 0, 256),
            ]
        );
        assert_eq!(tiles_of(0), vec![]);
        assert!(tiles_of(70_000).iter().all(|t| t.is_in(70_000)));
    }

    #[test]
    fn a_tile_is_in_a_tree_only_when_every_hash_it_holds_is_complete() {
        let t0 = |index, width| tile(TileKind::Hashes(0), index, width);
        assert!(t0(0, 1).is_in(1));
        assert!(!t0(0, 2).is_in(1));
        assert!(!t0(0, 256).is_in(255));
        assert!(t0(0, 256).is_in(256));
        assert!(t0(0, 255).is_in(256));
        assert!(!t0(1, 1).is_in(256));
        let t1 = |index, width| tile(TileKind::Hashes(1), index, width);
        assert!(!t1(0, 1).is_in(255));
        assert!(t1(0, 1).is_in(256));
        assert!(!t1(0, 2).is_in(511));
        assert!(t1(0, 2).is_in(512));
        assert!(t1(0, 256).is_in(65_536));
        assert!(!tile(TileKind::Hashes(8), 0, 1).is_in(u64::MAX));
        assert!(!tile(TileKind::Hashes(63), 0, 1).is_in(u64::MAX));
        assert!(tile(TileKind::Hashes(7), 0, 1).is_in(1 << 56));
        assert!(!t0(u64::MAX / 256, 256).is_in(u64::MAX));
        // Widths no path can name are in no tree.
        assert!(!t0(0, 0).is_in(1000));
        assert!(!t0(0, 257).is_in(1000));
        let e = |index, width| tile(TileKind::Entries, index, width);
        assert!(!e(0, 0).is_in(1000));
        assert!(e(0, 3).is_in(3));
        assert!(!e(0, 4).is_in(3));
        assert!(!e(u64::MAX, 256).is_in(u64::MAX));
    }

    #[test]
    fn tiles_hold_the_trees_hashes_and_rebuild_its_root() {
        for size in [1u64, 2, 255, 256, 257, 511, 512, 600, 65_536 + 300] {
            let tree =
                MemoryTree::from_leaves((0..size).map(|i| merkle::leaf_hash(&i.to_be_bytes())));
            let mut level0 = Vec::new();
            for t in tiles_of(size)
                .iter()
                .filter(|t| t.kind != TileKind::Entries)
            {
                let bytes = tile_bytes(t, size, &tree).unwrap().expect("in the tree");
                assert_eq!(bytes.len(), 32 * usize::from(t.width));
                let TileKind::Hashes(level) = t.kind else {
                    unreachable!()
                };
                for (i, h) in bytes.chunks_exact(32).enumerate() {
                    let id = NodeId::new(level * HEIGHT, t.index * WIDTH + i as u64);
                    assert_eq!(Some(h), tree.get(id).as_ref().map(|h| &h[..]), "{t:?}");
                    if level > 0 {
                        // Each hash is the root of the full tile below it.
                        let below =
                            tile(TileKind::Hashes(level - 1), t.index * WIDTH + i as u64, 256);
                        let below = tile_bytes(&below, size, &tree).unwrap().unwrap();
                        assert_eq!(tile_root(&below).as_ref().map(|h| &h[..]), Some(h));
                    }
                }
                if level == 0 {
                    level0.extend_from_slice(&bytes);
                }
            }
            let leaves = level0.chunks_exact(32).map(|h| h.try_into().unwrap());
            assert_eq!(
                MemoryTree::from_leaves(leaves).root(),
                tree.root(),
                "size {size}"
            );
            // A partial tile is the prefix of the full tile it grows into.
            if size >= 256 {
                let full = tile_bytes(&tile(TileKind::Hashes(0), 0, 256), size, &tree)
                    .unwrap()
                    .unwrap();
                let part = tile_bytes(&tile(TileKind::Hashes(0), 0, 100), size, &tree)
                    .unwrap()
                    .unwrap();
                assert_eq!(part, full[..3200]);
            }
            let beyond = tile(TileKind::Hashes(0), size / 256 + 1, 1);
            assert_eq!(tile_bytes(&beyond, size, &tree).unwrap(), None);
        }
        assert_eq!(tile_root(&[0; 32 * 255]), None);
    }

    #[test]
    fn bundles_round_trip_and_refuse_what_they_cannot_hold() {
        let entries: Vec<Vec<u8>> = vec![vec![], b"{}".to_vec(), vec![7; MAX_ENTRY_BYTES]];
        let b = encode_bundle(&entries).unwrap();
        assert_eq!(&b[..6], &[0, 0, 0, 2, b'{', b'}']);
        let back = decode_bundle(&b).unwrap();
        assert_eq!(back, entries.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert_eq!(
            encode_bundle(&[vec![0; MAX_ENTRY_BYTES + 1]]),
            Err(TileError::EntryTooLarge(MAX_ENTRY_BYTES + 1))
        );
        assert!(matches!(decode_bundle(&[0]), Err(TileError::BadBundle(_))));
        assert!(matches!(
            decode_bundle(&[0, 3, 1, 2]),
            Err(TileError::BadBundle(_))
        ));
        assert_eq!(decode_bundle(&[]).unwrap(), Vec::<&[u8]>::new());
    }
}
