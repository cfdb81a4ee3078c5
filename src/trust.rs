//! What `verify` trusts and what it has seen (SPEC §7 `verify`): the trust file of log keys,
//! and the state file of the checkpoints seen before, per log.
//!
//! The **trust file** lists the log keys a verifier accepts, one vkey per line (`#` starts a
//! comment), so one verifier can check labels of several ledgers: a seal's 4-byte log key ID
//! picks the key. `--log-key` pins one key (or a file of them) instead.
//!
//! The **state file** remembers, per log (origin and key ID), the newest signed checkpoint the
//! verifier has seen and the servers that showed it. The next online verification asks the
//! server for a consistency proof from that checkpoint to its fresh one, so a server that
//! rewrote or rolled back its history is caught even if every single answer it gives is
//! self-consistent. It also remembers a log key first trusted from a server (trust on first
//! use), so a later change of that key is noticed.
//!
//! Parsing, serializing and the decisions are plain functions; the file I/O is a thin layer
//! ([`read_trust_file`], [`load_state`], [`save_state`]) and writes atomically.

use crate::checkpoint::Checkpoint;
use crate::keys::{KeyError, KeyId, PublicKey};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The environment variable naming the trust file.
pub const TRUST_ENV: &str = "REMAN_LEDGER_TRUST";

/// The environment variable naming the state file.
pub const STATE_ENV: &str = "REMAN_LEDGER_STATE";

/// The state file format version.
pub const STATE_VERSION: u32 = 1;

/// How many server URLs are remembered per log (the most recent ones).
pub const MAX_SERVERS: usize = 16;

/// Why the trust or state file, or a `--log-key`, could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of a trust file is not a vkey.
    #[error(
        "{source_name}, line {line}: {reason} (each line holds one log key as <name>+<key ID>+<key>; # starts a comment)"
    )]
    BadTrustLine {
        /// The file (or "--log-key").
        source_name: String,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the key.
        reason: KeyError,
    },
    /// Two different keys with the same name and key ID: a seal could not tell them apart.
    #[error("{source_name}: two different keys share the name {name:?} and key ID {id}: keep one")]
    AmbiguousKey {
        /// The file.
        source_name: String,
        /// The key name.
        name: String,
        /// The key ID.
        id: KeyId,
    },
    /// A private key was given where a public key was expected.
    #[error(
        "{0} holds a private key: give the log's public key instead (its .pub file, or the vkey text that GET /api/v1/log answers)"
    )]
    PrivateKey(String),
    /// `--log-key` names a file (it has none of a vkey's `+` separators) that does not exist.
    #[error(
        "--log-key {0}: no such file (give the log's public key file, e.g. keys/log.key.pub, or the vkey text that GET /api/v1/log answers)"
    )]
    NoLogKeyFile(String),
    /// `--log-key` is neither a vkey nor a readable file.
    #[error(
        "--log-key {arg:?} is neither a log key (<name>+<key ID>+<key>: {reason}) nor a file that holds one"
    )]
    BadLogKeyArg {
        /// The argument.
        arg: String,
        /// Why it is not a vkey.
        reason: KeyError,
    },
    /// A key file or `--log-key` holds no key.
    #[error("{0} holds no log key")]
    NoKey(String),
    /// The state file is damaged.
    #[error(
        "state file {path} is damaged ({reason}): repair it, or move it away to start afresh (it only remembers checkpoints and log keys seen before)"
    )]
    BadState {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrustError + '_ {
    move |source| TrustError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A set of trusted log keys, looked up by the key ID a seal or checkpoint names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

impl TrustedKeys {
    /// Parses trust-file text: one vkey per line; blank lines and lines starting with `#` are
    /// skipped; a `#` after a key starts a comment too. `source_name` names the text in errors.
    /// A private key is refused with a clear message (a verifier needs only public keys).
    pub fn parse(text: &str, source_name: &str) -> Result<TrustedKeys, TrustError> {
        let mut out = TrustedKeys::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.split_once('#').map_or(line, |(k, _)| k).trim();
            if line.is_empty() {
                continue;
            }
            if line.starts_with("PRIVATE+KEY+") {
                return Err(TrustError::PrivateKey(source_name.to_owned()));
            }
            let key = PublicKey::parse(line).map_err(|reason| TrustError::BadTrustLine {
                source_name: source_name.to_owned(),
                line: i + 1,
                reason,
            })?;
            out.add(key, source_name)?;
        }
        Ok(out)
    }

    /// Adds a key; the same key twice is kept once, two different keys with one name and key
    /// ID are refused.
    pub fn add(&mut self, key: PublicKey, source_name: &str) -> Result<(), TrustError> {
        match self
            .keys
            .iter()
            .find(|k| k.id() == key.id() && k.name() == key.name())
        {
            Some(k) if *k == key => Ok(()),
            Some(_) => Err(TrustError::AmbiguousKey {
                source_name: source_name.to_owned(),
                name: key.name().to_owned(),
                id: key.id(),
            }),
            None => {
                self.keys.push(key);
                Ok(())
            }
        }
    }

    /// The keys, in file order.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The trusted key with this key ID (a seal names its log key by ID only). With several
    /// (a 32-bit collision between logs) the first is returned; the seal signature then decides.
    pub fn by_id(&self, id: KeyId) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.id() == id)
    }

    /// The trusted key equal to this vkey text, if any.
    pub fn by_vkey(&self, vkey: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.to_vkey() == vkey)
    }
}

/// Parses the `--log-key` argument: a vkey text, or a file holding one or more (a `.pub`
/// file or a trust file).
pub fn log_key_arg(arg: &str) -> Result<TrustedKeys, TrustError> {
    let trimmed = arg.trim();
    let vkey_error = match PublicKey::parse(trimmed) {
        Ok(key) => {
            let mut keys = TrustedKeys::default();
            keys.add(key, "--log-key")?;
            return Ok(keys);
        }
        Err(e) => e,
    };
    if trimmed.starts_with("PRIVATE+KEY+") {
        return Err(TrustError::PrivateKey("--log-key".to_owned()));
    }
    let path = Path::new(arg);
    if !path.exists() && !trimmed.contains('+') {
        return Err(TrustError::NoLogKeyFile(arg.to_owned()));
    }
    if !path.is_file() {
        return Err(TrustError::BadLogKeyArg {
            arg: arg.to_owned(),
            reason: vkey_error,
        });
    }
    let keys = read_trust_file(path)?;
    if keys.is_empty() {
        return Err(TrustError::NoKey(path.display().to_string()));
    }
    Ok(keys)
}

/// Reads a trust file (see [`TrustedKeys::parse`]).
pub fn read_trust_file(path: &Path) -> Result<TrustedKeys, TrustError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    TrustedKeys::parse(&text, &path.display().to_string())
}

/// Where a file is looked for, and whether the user named it (a named file must exist; the
/// default one may be missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The path.
    pub path: PathBuf,
    /// Given by a flag or an environment variable (not the default).
    pub explicit: bool,
}

/// The trust file: `flag`, else `$REMAN_LEDGER_TRUST`, else
/// `$XDG_CONFIG_HOME/reman-ledger/trusted-logs`, else `~/.config/reman-ledger/trusted-logs`.
/// `None` when there is no home directory to look in. `env` reads an environment variable.
pub fn trust_path(flag: Option<&Path>, env: impl Fn(&str) -> Option<OsString>) -> Option<Located> {
    locate(
        flag,
        &env,
        TRUST_ENV,
        "XDG_CONFIG_HOME",
        ".config",
        "reman-ledger/trusted-logs",
    )
}

/// The state file: `flag`, else `$REMAN_LEDGER_STATE`, else
/// `$XDG_STATE_HOME/reman-ledger/checkpoints.json`, else
/// `~/.local/state/reman-ledger/checkpoints.json`. `None` when there is no home directory.
pub fn state_path(flag: Option<&Path>, env: impl Fn(&str) -> Option<OsString>) -> Option<Located> {
    locate(
        flag,
        &env,
        STATE_ENV,
        "XDG_STATE_HOME",
        ".local/state",
        "reman-ledger/checkpoints.json",
    )
}

fn locate(
    flag: Option<&Path>,
    env: &dyn Fn(&str) -> Option<OsString>,
    var: &str,
    xdg_var: &str,
    home_dir: &str,
    file: &str,
) -> Option<Located> {
    let set = |v: &str| env(v).filter(|s| !s.is_empty()).map(PathBuf::from);
    if let Some(p) = flag {
        return Some(Located {
            path: p.to_owned(),
            explicit: true,
        });
    }
    if let Some(p) = set(var) {
        return Some(Located {
            path: p,
            explicit: true,
        });
    }
    // XDG: a relative value is invalid and must be ignored.
    let base = set(xdg_var)
        .filter(|p| p.is_absolute())
        .or_else(|| set("HOME").map(|h| h.join(home_dir)))?;
    Some(Located {
        path: base.join(file),
        explicit: false,
    })
}

/// Reads the trust file found by [`trust_path`]: a missing default file is an empty list, a
/// missing named file an error.
pub fn load_trust(located: Option<&Located>) -> Result<TrustedKeys, TrustError> {
    match located {
        Some(l) if l.explicit || l.path.exists() => read_trust_file(&l.path),
        _ => Ok(TrustedKeys::default()),
    }
}

/// The origin of the demo's example log (`serve` on an empty directory): a name no real
/// ledger is given.
pub const DEMO_ORIGIN: &str = "reman-ledger.example/log";

/// The demo log key (`keys/log.key.pub`): its private key is public, in this repository, so
/// every demo ledger signs with it and two of them are two histories under one key.
pub const DEMO_LOG_VKEY: &str =
    "reman-ledger.example/log+c216fbea+AYI9qINTjcPj4lYSGLuJMlYyTMQaIRSPXahS9Tg99JIm";

/// The newest checkpoint seen of one log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenLog {
    /// The log's origin (its key's name).
    pub origin: String,
    /// The log key (vkey): pinned from here on when no key is given.
    pub key: String,
    /// The tree size of `checkpoint`.
    pub tree_size: u64,
    /// Its root hash, lowercase hex.
    pub root: String,
    /// The signed checkpoint text, as the server sent it (evidence, should it ever disagree).
    pub checkpoint: String,
    /// The servers that showed this log, most recent last.
    pub servers: Vec<String>,
    /// When it was last updated (RFC 3339 UTC).
    pub seen: String,
}

impl SeenLog {
    /// What to tell a user whose state file at `path` remembers this checkpoint, which the log
    /// no longer extends: where it is kept. A log under the public demo key may simply have
    /// been created again; any other log showed two histories, and the file is the evidence.
    pub fn rewritten_hint(&self, path: &Path) -> String {
        let seen = format!(
            "the checkpoint of size {} seen before is remembered in {} (last seen {}, at {})",
            self.tree_size,
            path.display(),
            self.seen,
            self.servers.join(", ")
        );
        if self.key == DEMO_LOG_VKEY {
            format!(
                "{seen}; this log signs with the public demo key, so a demo ledger created again looks exactly like this: check it with another --state file, or delete that file's entry for {DEMO_ORIGIN}"
            )
        } else {
            format!(
                "{seen}; keep that file: with the checkpoint presented now, it is the evidence that {} showed two histories under one key",
                self.origin
            )
        }
    }

    /// The pinned log key.
    pub fn public_key(&self) -> Result<PublicKey, KeyError> {
        PublicKey::parse(&self.key)
    }

    /// The root as bytes (checked when the state was loaded).
    pub fn root_bytes(&self) -> [u8; 32] {
        crate::client::parse_hash(&self.root).unwrap_or([0; 32])
    }

    /// Checks that the fields agree with the signed checkpoint they summarise.
    fn check(&self) -> Result<(), String> {
        let key = self
            .public_key()
            .map_err(|e| format!("log {:?}: {e}", self.origin))?;
        let cp = Checkpoint::open(&self.checkpoint, &key)
            .map_err(|e| format!("log {:?}: {e}", self.origin))?;
        if cp.origin != self.origin || cp.size != self.tree_size || cp.root != self.root_bytes() {
            return Err(format!(
                "log {:?}: tree_size or root differ from the signed checkpoint",
                self.origin
            ));
        }
        Ok(())
    }
}

/// The state file: the newest checkpoint seen per log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The format version ([`STATE_VERSION`]).
    pub version: u32,
    /// One record per log (origin and key).
    pub logs: Vec<SeenLog>,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: STATE_VERSION,
            logs: Vec::new(),
        }
    }
}

/// What a fresh checkpoint means next to the one seen before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compared {
    /// This log was never seen: nothing to compare (the fresh checkpoint is remembered).
    FirstSight,
    /// The same tree as before.
    Same,
    /// A larger tree: a consistency proof from `first` (whose root was `first_root`) is needed.
    Grown {
        /// The tree size seen before.
        first: u64,
        /// The root seen before.
        first_root: [u8; 32],
    },
    /// A smaller tree than seen before: the log was rolled back.
    Rollback {
        /// The tree size seen before.
        seen: u64,
    },
    /// The same size with another root: two histories were signed.
    Fork {
        /// The tree size.
        size: u64,
    },
}

impl State {
    /// Parses and checks a state file's text: every record's key, signed checkpoint, size and
    /// root must agree (a damaged file must not silently weaken the check).
    pub fn parse(text: &str) -> Result<State, String> {
        let state: State = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if state.version != STATE_VERSION {
            return Err(format!(
                "format version {} is not supported (expected {STATE_VERSION})",
                state.version
            ));
        }
        for log in &state.logs {
            log.check()?;
        }
        Ok(state)
    }

    /// The file text (pretty JSON, ends with a newline).
    pub fn to_text(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The record of the log with this origin and key.
    pub fn log(&self, key: &PublicKey) -> Option<&SeenLog> {
        self.logs
            .iter()
            .find(|l| l.origin == key.name() && l.key == key.to_vkey())
    }

    /// The log last seen at this server URL, if any.
    pub fn by_server(&self, url: &str) -> Option<&SeenLog> {
        self.logs
            .iter()
            .filter(|l| l.servers.iter().any(|s| s == url))
            .max_by(|a, b| a.seen.cmp(&b.seen))
    }

    /// The logs remembered with this origin (normally one; more after a key change).
    pub fn by_origin<'a>(&'a self, origin: &'a str) -> impl Iterator<Item = &'a SeenLog> + 'a {
        self.logs.iter().filter(move |l| l.origin == origin)
    }

    /// The log remembered under this key ID, if any.
    pub fn by_key_id(&self, id: KeyId) -> Option<&SeenLog> {
        self.logs
            .iter()
            .find(|l| l.public_key().is_ok_and(|k| k.id() == id))
    }

    /// Compares a fresh checkpoint (already verified with `key`) with the one seen before.
    pub fn compare(&self, key: &PublicKey, fresh: &Checkpoint) -> Compared {
        let Some(seen) = self.log(key) else {
            return Compared::FirstSight;
        };
        let root = seen.root_bytes();
        match seen.tree_size.cmp(&fresh.size) {
            std::cmp::Ordering::Greater => Compared::Rollback {
                seen: seen.tree_size,
            },
            std::cmp::Ordering::Equal if root == fresh.root => Compared::Same,
            std::cmp::Ordering::Equal => Compared::Fork { size: fresh.size },
            std::cmp::Ordering::Less => Compared::Grown {
                first: seen.tree_size,
                first_root: root,
            },
        }
    }

    /// Remembers a checkpoint of the log of `key`, verified and found consistent, shown by
    /// `server` at time `now`. An older (smaller) checkpoint never replaces a newer one (two
    /// verifications may run at once); the server is remembered either way.
    pub fn remember(
        &mut self,
        key: &PublicKey,
        checkpoint: &Checkpoint,
        signed_text: &str,
        server: &str,
        now: &str,
    ) {
        let vkey = key.to_vkey();
        let pos = self
            .logs
            .iter()
            .position(|l| l.origin == key.name() && l.key == vkey);
        let i = pos.unwrap_or_else(|| {
            self.logs.push(SeenLog {
                origin: key.name().to_owned(),
                key: vkey,
                tree_size: 0,
                root: String::new(),
                checkpoint: String::new(),
                servers: Vec::new(),
                seen: String::new(),
            });
            self.logs.len() - 1
        });
        let Some(log) = self.logs.get_mut(i) else {
            return;
        };
        // A larger tree replaces the one remembered; a tree of the same size only when its
        // root is the same (a different root is a fork, kept out as evidence for `compare`).
        let same_size_other_root =
            checkpoint.size == log.tree_size && log.root != hex::encode(checkpoint.root);
        if log.checkpoint.is_empty()
            || checkpoint.size > log.tree_size
            || (checkpoint.size == log.tree_size && !same_size_other_root)
        {
            log.tree_size = checkpoint.size;
            log.root = hex::encode(checkpoint.root);
            log.checkpoint = signed_text.to_owned();
        }
        log.servers.retain(|s| s != server);
        log.servers.push(server.to_owned());
        let excess = log.servers.len().saturating_sub(MAX_SERVERS);
        log.servers.drain(..excess);
        log.seen = now.to_owned();
    }
}

/// Checks that `fresh` (verified with `key`) extends the checkpoint of the same log
/// remembered in `state`: when the tree grew, its first entries (whose root
/// `root_of_prefix(size)` gives, from entries the caller has verified) must make the tree
/// remembered. `Err` says how the log rewrote its history (rolled back or forked).
pub fn check_extends(
    state: &State,
    key: &PublicKey,
    fresh: &Checkpoint,
    root_of_prefix: impl FnOnce(u64) -> Option<crate::merkle::Hash>,
) -> Result<Compared, String> {
    let compared = state.compare(key, fresh);
    match compared {
        Compared::FirstSight | Compared::Same => Ok(compared),
        Compared::Rollback { seen } => Err(format!(
            "rolled back: it shows {} entries, but a checkpoint of {seen} was seen before (a log's tree never shrinks: a rollback, or a fork onto a shorter branch)",
            fresh.size
        )),
        Compared::Fork { size } => Err(format!(
            "forked: it signed two different trees of {size} entries"
        )),
        Compared::Grown { first, first_root } => match root_of_prefix(first) {
            Some(root) if root == first_root => Ok(compared),
            _ => Err(format!(
                "forked: its first {first} entries are not the tree of {first} seen before (its tree of {} entries does not extend it)",
                fresh.size
            )),
        },
    }
}

/// Reads the state file; a missing file is an empty state.
pub fn load_state(path: &Path) -> Result<State, TrustError> {
    match std::fs::read_to_string(path) {
        Ok(text) => State::parse(&text).map_err(|reason| TrustError::BadState {
            path: path.to_owned(),
            reason,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Writes the state file atomically (a temporary file in the same directory, flushed, then
/// renamed over it), creating its directory when missing. A crash leaves the old file or the
/// new one, never half of one.
pub fn save_state(path: &Path, state: &State) -> Result<(), TrustError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".to_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(state.to_text().as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    // The rename is durable once the directory is; failing that is not worth an error.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_demo_log_vkey_is_the_one_of_keys() {
        let file =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/keys/log.key.pub"))
                .unwrap();
        assert_eq!(file.trim(), DEMO_LOG_VKEY);
    }

    #[test]
    fn paths_follow_flag_env_xdg_home() {
        let p = |l: Option<Located>| l.map(|l| (l.path.display().to_string(), l.explicit));
        let flag = Path::new("/x/trust");
        assert_eq!(
            p(trust_path(Some(flag), env(&[(TRUST_ENV, "/e")]))),
            Some(("/x/trust".into(), true))
        );
        assert_eq!(
            p(trust_path(None, env(&[(TRUST_ENV, "/e"), ("HOME", "/h")]))),
            Some(("/e".into(), true))
        );
        assert_eq!(
            p(trust_path(
                None,
                env(&[("XDG_CONFIG_HOME", "/c"), ("HOME", "/h")])
            )),
            Some(("/c/reman-ledger/trusted-logs".into(), false))
        );
        assert_eq!(
            p(state_path(
                None,
                env(&[("XDG_STATE_HOME", "rel"), ("HOME", "/h")])
            )),
            Some((
                "/h/.local/state/reman-ledger/checkpoints.json".into(),
                false
            ))
        );
        assert_eq!(p(state_path(None, env(&[]))), None);
    }

    #[test]
    fn trust_text_comments_duplicates_and_errors() {
        let a = PrivateKey::generate("a.example/log").unwrap();
        let b = PrivateKey::generate("b.example/log").unwrap();
        let text = format!(
            "# logs\n\n{}  # first\n{}\n{}\n",
            a.public().to_vkey(),
            b.public().to_vkey(),
            a.public().to_vkey()
        );
        let keys = TrustedKeys::parse(&text, "t").unwrap();
        assert_eq!(keys.keys().len(), 2);
        assert_eq!(keys.by_id(b.id()), Some(b.public()));
        let bad = TrustedKeys::parse("# x\nnot-a-key\n", "t").unwrap_err();
        assert!(bad.to_string().starts_with("t, line 2:"), "{bad}");
        let private = TrustedKeys::parse(&a.to_text(), "t").unwrap_err();
        assert!(matches!(private, TrustError::PrivateKey(_)));
    }

    #[test]
    fn comparing_and_remembering_checkpoints() {
        let key = PrivateKey::generate("log.example/log").unwrap();
        let cp = |size: u64, root: u8| Checkpoint {
            origin: "log.example/log".into(),
            size,
            root: [root; 32],
            extensions: vec![],
        };
        let mut state = State::default();
        let c5 = cp(5, 1);
        assert_eq!(state.compare(key.public(), &c5), Compared::FirstSight);
        let text = c5.sign(&key).unwrap();
        state.remember(key.public(), &c5, &text, "http://a", "t1");
        assert_eq!(state.compare(key.public(), &c5), Compared::Same);
        assert_eq!(
            state.compare(key.public(), &cp(5, 2)),
            Compared::Fork { size: 5 }
        );
        assert_eq!(
            state.compare(key.public(), &cp(4, 1)),
            Compared::Rollback { seen: 5 }
        );
        assert_eq!(
            state.compare(key.public(), &cp(9, 1)),
            Compared::Grown {
                first: 5,
                first_root: [1; 32]
            }
        );
        // A smaller checkpoint never replaces a larger one; the text round-trips and checks.
        let c3 = cp(3, 3);
        state.remember(key.public(), &c3, &c3.sign(&key).unwrap(), "http://b", "t2");
        assert_eq!(state.logs[0].tree_size, 5);
        // Nor does another tree of the same size (a fork): the first one stays as evidence.
        let fork = cp(5, 9);
        state.remember(
            key.public(),
            &fork,
            &fork.sign(&key).unwrap(),
            "http://b",
            "t3",
        );
        assert_eq!(state.logs[0].root, hex::encode([1u8; 32]));
        assert_eq!(
            state.compare(key.public(), &fork),
            Compared::Fork { size: 5 }
        );
        assert_eq!(state.logs[0].servers, ["http://a", "http://b"]);
        assert_eq!(state.by_server("http://b").unwrap().tree_size, 5);
        let back = State::parse(&state.to_text()).unwrap();
        assert_eq!(back, state);
        // A record whose size disagrees with its signed checkpoint is refused.
        let tampered = state
            .to_text()
            .replace("\"tree_size\": 5", "\"tree_size\": 4");
        assert!(State::parse(&tampered).unwrap_err().contains("differ"));
    }
}
