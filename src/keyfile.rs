//! Key files on disk (SPEC §2): `PATH` holds the private key (mode 0600), `PATH.pub` the vkey.

use crate::cosignature::{CosignatureError, CosignerKey};
use crate::keys::{KeyError, PrivateKey, PublicKey};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not hold a valid key.
    #[error("{path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with the key.
        source: KeyError,
    },
    /// A private key file where a public key was expected.
    #[error(
        "{0} holds a private key: give the public key instead (never pass a private key around)"
    )]
    Private(PathBuf),
    /// A witness's key (a vkey, or a file holding one) is not one.
    #[error("{given}: {source}")]
    Witness {
        /// The key or file as given.
        given: String,
        /// What is wrong with it.
        source: crate::cosignature::CosignatureError,
    },
    /// The file holds a key with another name than expected.
    #[error("{path} holds key {found:?}, expected a key named {expected:?}")]
    WrongName {
        /// The file.
        path: PathBuf,
        /// The name found.
        found: String,
        /// The name expected.
        expected: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The path of the public key file that goes with a private key file.
pub fn pub_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Reads a private key file.
pub fn read_private(path: &Path) -> Result<PrivateKey, KeyFileError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    PrivateKey::parse(&text).map_err(|source| KeyFileError::Key {
        path: path.to_owned(),
        source,
    })
}

/// Reads a public key file (a vkey, one line).
pub fn read_public(path: &Path) -> Result<PublicKey, KeyFileError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    PublicKey::parse(text.trim()).map_err(|source| KeyFileError::Key {
        path: path.to_owned(),
        source,
    })
}

/// A witness's cosigner key as given on the command line: its vkey, as `reman-ledger witness`
/// prints it, or a file holding it. What a file holds is not repeated in errors (it may be a
/// private key given by mistake).
pub fn read_witness_key(arg: &str) -> Result<CosignerKey, KeyFileError> {
    let path = Path::new(arg);
    let witness_error = |source| KeyFileError::Witness {
        given: arg.to_owned(),
        source,
    };
    if path.is_dir() {
        return Err(KeyFileError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(
                "a directory: give the witness's cosigner key, or a file holding it",
            ),
        });
    }
    if !path.is_file() {
        if !arg.contains('+') {
            // No vkey is without its `+` separators: this names a file.
            return Err(KeyFileError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file (give the witness's cosigner key: the vkey `reman-ledger witness` prints, or a file holding it)",
                ),
            });
        }
        if arg.trim().starts_with("PRIVATE+KEY+") {
            return Err(witness_error(CosignatureError::BadKey(
                "a private key".into(),
            )));
        }
        return CosignerKey::parse(arg).map_err(witness_error);
    }
    let text = fs::read_to_string(path).map_err(io(path))?;
    let text = text.trim();
    if text.starts_with("PRIVATE+KEY+") {
        return Err(KeyFileError::Private(path.to_owned()));
    }
    CosignerKey::parse(text).map_err(|e| match e {
        CosignatureError::BadKey(_) => {
            witness_error(CosignatureError::BadKey(format!("the text of {arg}")))
        }
        other => witness_error(other),
    })
}

/// Writes a new key pair: `path` (mode 0600, refused if it exists) and `path.pub`.
pub fn write_new(path: &Path, key: &PrivateKey) -> Result<(), KeyFileError> {
    let pub_file = pub_path(path);
    if pub_file.exists() {
        return Err(KeyFileError::Io {
            path: pub_file,
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a public key file is already there; move it away first",
            ),
        });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(format!("{}\n", key.to_text()).as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io(path))?;
    fs::write(&pub_file, format!("{}\n", key.public().to_vkey())).map_err(io(&pub_file))?;
    Ok(())
}

/// Reads the key at `path`, or creates it with `name` when the file does not exist.
/// An existing file must hold a key named `name` when a name is given.
pub fn read_or_create(path: &Path, name: &str) -> Result<(PrivateKey, bool), KeyFileError> {
    if path.exists() {
        let key = read_private(path)?;
        if key.name() != name {
            return Err(KeyFileError::WrongName {
                path: path.to_owned(),
                found: key.name().to_owned(),
                expected: name.to_owned(),
            });
        }
        return Ok((key, false));
    }
    let key = PrivateKey::generate(name).map_err(|source| KeyFileError::Key {
        path: path.to_owned(),
        source,
    })?;
    write_new(path, &key)?;
    Ok((key, true))
}

/// Reads every private key file (`*.key`) under `dir`, recursively, by key name.
pub fn read_dir_keys(
    dir: &Path,
) -> Result<std::collections::HashMap<String, PrivateKey>, KeyFileError> {
    let mut out = std::collections::HashMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io(&d))? {
            let p = e.map_err(io(&d))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "key") {
                let k = read_private(&p)?;
                out.insert(k.name().to_owned(), k);
            }
        }
    }
    Ok(out)
}
