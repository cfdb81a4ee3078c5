//! The `reman-ledger` command line (SPEC §7): parses arguments and calls the library.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand, ValueEnum};
use reman_ledger::cli::{self, CliError, InitOptions};
use reman_ledger::ledger::{LedgerConfig, OperatorDetails};
use reman_ledger::payload::PayloadType;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: the ledger allocates many small, short-lived buffers on many threads, where
/// glibc's allocator spent a fifth of the append path's CPU (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Certification and traceability ledger for remanufactured products.
///
/// Remanufacturers sign one certificate per unit; the ledger logs it in an append-only,
/// verifiable Merkle-tree log and issues a seal and a QR code; customs and buyers verify.
/// Exit codes: 0 valid/ok, 1 checked and not valid, 2 usage or I/O error.
#[derive(Parser)]
#[command(
    name = "reman-ledger",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 valid / ok; 1 checked and not valid (refused, bad signature, revoked, tampered); 2 usage or I/O error.\n\nA remanufacturer's day:\n  reman-ledger issue --key keys/parties/suzhou-reman.example.key --server http://127.0.0.1:8080 \\\n      --log-key keys/log.key.pub --qr-dir labels/ production.jsonl\nAnyone, any time:\n  reman-ledger audit --server http://127.0.0.1:8080 --log-key keys/log.key.pub\n\n'reman-ledger <COMMAND> --help' explains each command."
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Party,
    Certificate,
    Revocation,
    Event,
}

impl From<Kind> for PayloadType {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Party => PayloadType::Party,
            Kind::Certificate => PayloadType::Certificate,
            Kind::Revocation => PayloadType::Revocation,
            Kind::Event => PayloadType::Event,
        }
    }
}

/// The default number of parallel connections of `issue` and `audit --server`.
const DEFAULT_JOBS: usize = 4;

#[derive(Subcommand)]
enum Command {
    /// Create a named Ed25519 key pair: PATH (private, mode 0600) and PATH.pub; prints the vkey.
    #[command(
        after_help = "Example:\n  reman-ledger keygen --name gearbox-works.example --out keys/gearbox-works.key"
    )]
    Keygen {
        /// The key name (1-100 characters of A-Z a-z 0-9 . _ - /), e.g. gearbox-works.example.
        #[arg(long)]
        name: String,
        /// Where to write the private key; the public key goes to PATH.pub.
        #[arg(long)]
        out: PathBuf,
    },
    /// Create a new ledger in DIR; entry 0 registers the operator. Missing key files are created.
    #[command(
        after_help = "Example:\n  reman-ledger init --data data --origin ledger.example/log --log-key keys/log.key --operator-key keys/operator.key"
    )]
    Init {
        /// The data directory (sled).
        #[arg(long)]
        data: PathBuf,
        /// The log's origin, which is also the log key's name, e.g. ledger.example/log.
        #[arg(long)]
        origin: String,
        /// The log key file (signs checkpoints and seals).
        #[arg(long)]
        log_key: PathBuf,
        /// The operator key file (signs entry 0 and party registrations).
        #[arg(long)]
        operator_key: PathBuf,
        /// Name for a new operator key (default: operator.<origin host>).
        #[arg(long)]
        operator_name: Option<String>,
        /// Operator's display name in its registration.
        #[arg(long)]
        display_name: Option<String>,
        /// Operator's ISO 3166-1 alpha-2 country.
        #[arg(long)]
        country: Option<String>,
    },
    /// Sign a payload file (JSON) as a DSSE envelope and print the envelope.
    ///
    /// The payload is checked first with the ledger's own rules; a certificate's GTIN-8/12/13
    /// is left-padded with zeros to a GTIN-14. A payload the ledger will refuse (a failed test,
    /// a missing field...) is signed as it is, to try a ledger's refusals, with a warning that
    /// says why and exit 1; a file that is not a JSON object is not signed (exit 2).
    #[command(
        after_help = "Example:\n  reman-ledger sign --key keys/parties/suzhou-reman.example.key --type certificate \\\n      fixtures/examples/certificate.json > cert.envelope.json"
    )]
    Sign {
        /// The signer's private key file.
        #[arg(long)]
        key: PathBuf,
        /// What the payload is.
        #[arg(long = "type", value_enum)]
        kind: Kind,
        /// The payload file.
        file: PathBuf,
    },
    /// Post a signed envelope to a ledger and print its answer.
    ///
    /// Prints whether the envelope is newly logged or was logged before, its entry index,
    /// certificate ID, QR URL and the tree size. With --log-key the receipt is verified before
    /// it is reported OK: the checkpoint's signature under that key, the inclusion proof of the
    /// entry, that the entry logged there is this envelope, and the certificate's seal.
    /// Exit 0: logged (new or already); 1: refused by the ledger (its problem is printed) or a
    /// receipt that does not verify; 2: unreadable file, unreachable or failing server.
    #[command(
        after_help = "Example:\n  reman-ledger submit --server http://127.0.0.1:8080 --log-key keys/log.key.pub cert.envelope.json"
    )]
    Submit {
        /// The ledger's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        server: String,
        /// The log key to verify the receipt under: a vkey, or a file holding one (.pub).
        #[arg(long, value_name = "VKEY-or-FILE")]
        log_key: Option<String>,
        /// Print the server's JSON answer (the receipt, or the RFC 9457 problem).
        #[arg(long)]
        json: bool,
        /// The envelope file (as printed by `sign`); `-` reads standard input.
        envelope: PathBuf,
    },
    /// Sign and submit many payloads in one step, e.g. a day's production of certificates.
    ///
    /// INPUT is a payload JSON file, a directory of *.json payload files (taken in name order),
    /// or a .jsonl file with one payload per line. Each payload is checked locally first (an
    /// invalid one is refused with its reason and not sent), signed with --key, and submitted
    /// over --jobs parallel connections. A summary follows: logged, already logged, refused
    /// (each with its file[:line] and reason). With --qr-dir, the QR code of every logged
    /// certificate is written there as a PNG, with an index.csv. With --log-key every receipt
    /// is verified first. Exit 0: all logged; 1: something was refused or a receipt did not
    /// verify; 2: usage, files, or the ledger could not be reached (rerun: it is idempotent).
    #[command(
        after_help = "Example:\n  reman-ledger issue --key keys/parties/suzhou-reman.example.key --server http://127.0.0.1:8080 \\\n      --log-key keys/log.key.pub --qr-dir labels/ production-2026-11-21.jsonl"
    )]
    Issue {
        /// The signer's private key file.
        #[arg(long)]
        key: PathBuf,
        /// The ledger's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        server: String,
        /// What the payloads are.
        #[arg(long = "type", value_enum, default_value = "certificate")]
        kind: Kind,
        /// Write each logged certificate's QR code here (PNG) with an index.csv.
        #[arg(long, value_name = "DIR")]
        qr_dir: Option<PathBuf>,
        /// Side of the QR images in pixels.
        #[arg(long, default_value_t = reman_ledger::qr::DEFAULT_SIZE)]
        qr_size: u32,
        /// The log key to verify every receipt under: a vkey, or a file holding one (.pub).
        #[arg(long, value_name = "VKEY-or-FILE")]
        log_key: Option<String>,
        /// Parallel connections to the ledger.
        #[arg(long, default_value_t = DEFAULT_JOBS)]
        jobs: usize,
        /// Print the summary as JSON, with every payload's result.
        #[arg(long)]
        json: bool,
        /// Payload files, directories of *.json payloads, or .jsonl files.
        #[arg(required = true, value_name = "INPUT")]
        inputs: Vec<PathBuf>,
    },
    /// Run the ledger's HTTP API, status pages and QR codes. On an empty data directory it first
    /// creates a ledger with the default keys of keys/ (created when missing).
    #[command(after_help = "Example:\n  reman-ledger serve --demo --listen 127.0.0.1:8080")]
    Serve {
        /// The data directory (sled).
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// The log key file (signs checkpoints and seals).
        #[arg(long, default_value = "keys/log.key")]
        log_key: PathBuf,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The base URL of QR links (default http://<listen>).
        #[arg(long)]
        base_url: Option<String>,
        /// Also load the demo data set of fixtures/demo/ (signed with the demo keys of keys/).
        #[arg(long)]
        demo: bool,
        /// A witness to ask to cosign each new checkpoint, as VKEY@URL: its cosigner key
        /// (printed by `reman-ledger witness`, or a file holding it), @, its URL. Repeat for each witness; their
        /// cosignatures are served with the checkpoint (GET /checkpoint, tlog-proofs).
        /// Answers are then made against the newest checkpoint all witnesses (or
        /// --witness-quorum of them) have cosigned (a new entry is found a moment after its
        /// receipt).
        #[arg(long = "witness", value_name = "VKEY@URL")]
        witnesses: Vec<String>,
        /// With --witness: how many of the witnesses must cosign a checkpoint before answers
        /// are made against it (default: all). With a quorum, one witness down does not leave
        /// the answers without cosignatures.
        #[arg(long = "witness-quorum", value_name = "K")]
        witness_quorum: Option<usize>,
        /// With --witness: seconds the answers wait for the witnesses to cosign a newer
        /// checkpoint before they are made against the latest one anyway (a witness down).
        #[arg(long = "witness-wait", value_name = "SECONDS", default_value_t = 10.0)]
        witness_wait: f64,
        #[command(flatten)]
        connections: ConnectionOpts,
    },
    /// Re-check every entry, the hash chain, every signature and the tree against the checkpoint.
    ///
    /// Audits a local ledger (--data DIR; stop its server first) or a remote one over HTTP
    /// (--server URL), trusting nothing it serves: every entry is fetched and replayed, the
    /// Merkle root of all of them must be the one in the checkpoint signed by the log key, and
    /// every certificate's seal (kept in the store, or served) must verify under it. Over
    /// HTTP, the status, revocation, successor and events the server serves for each
    /// certificate must be those its entries give it (a hidden revocation fails the audit;
    /// what the server shows from entries after the audited checkpoint is newer, not a lie).
    /// On a data directory, what the store keeps beside its entries must be what they make:
    /// every state record lookups and the rules answer from, every Merkle node proofs are
    /// made of, nothing kept beyond the log.
    /// Pin the log key with --log-key: without it, a remote audit uses the key the server
    /// names and warns that it is not pinned. The first bad entry is named. Exit 0: the log
    /// verifies; 1: it does not (tampered, bad signature, wrong key, a false status served, a
    /// derived record or node changed on disk, a rollback seen with --state); 2: usage,
    /// unreadable store or unreachable server.
    #[command(
        group(clap::ArgGroup::new("source").required(true).args(["data", "server"])),
        after_help = "Examples:\n  reman-ledger audit --data data\n  reman-ledger audit --server http://127.0.0.1:8080 --log-key keys/log.key.pub"
    )]
    Audit {
        /// The data directory of a local ledger.
        #[arg(long)]
        data: Option<PathBuf>,
        /// The base URL of a remote ledger, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        server: Option<String>,
        /// The log key to pin: a vkey, or a file holding one (.pub). Default: for --data, the
        /// key the store was created with; for --server, the key the server names (warned).
        #[arg(long, value_name = "VKEY-or-FILE")]
        log_key: Option<String>,
        /// Parallel connections for --server.
        #[arg(long, default_value_t = DEFAULT_JOBS)]
        jobs: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The state file of checkpoints seen (the one verify keeps, e.g.
        /// ~/.local/state/reman-ledger/checkpoints.json). The log, served or on the data
        /// directory, must extend the checkpoint remembered there (a rollback, for instance to
        /// an older checkpoint the directory still holds, or a fork fails the audit, with both
        /// checkpoints), and the audited checkpoint is remembered for the next audit or
        /// verification. The file follows the log, not a directory or server: a mirror still
        /// catching up to a checkpoint remembered from its origin is behind it, and fails.
        #[arg(long, value_name = "FILE", requires = "log_key")]
        state: Option<PathBuf>,
    },
    /// Export the log as static C2SP tlog-tiles files, for any static web server or mirror.
    ///
    /// Writes OUT/checkpoint, OUT/tile/... (Merkle tiles and entry bundles) and OUT/seals/...
    /// (the seals of each bundle's certificates), byte for byte what `serve` answers at those
    /// paths for the same tree, but for the witnesses' cosignatures, which only a running
    /// ledger gathers (SPEC §8): serve OUT from any web server, CDN or object store, and
    /// clients read and verify the log from it, and `mirror --from` follows it.
    /// Run it again after the log has grown: the tiles already exported are kept, the rest is
    /// written, the checkpoint last. A directory holding another log's export, or a fork of
    /// this one, is refused. The ledger must not be running (sled holds its directory's lock).
    /// Exit 0: exported; 1: the ledger's own checkpoint does not hold; 2: usage or I/O error.
    #[command(
        after_help = "Example:\n  reman-ledger export --data data --out public/log\n  (cd public && python3 -m http.server)   # then GET /log/checkpoint, /log/tile/0/000.p/..."
    )]
    Export {
        /// The data directory of a local ledger.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// The directory to write (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Run a witness: cosign the checkpoints of the logs you watch (C2SP tlog-witness).
    ///
    /// An independent party (the customs authority of an importing country, say) runs a
    /// witness for the ledgers it relies on. Logs POST their new checkpoints to
    /// /add-checkpoint with a consistency proof from the tree the witness cosigned last; the
    /// witness cosigns (C2SP tlog-cosignature, Ed25519) only a checkpoint signed by the log's
    /// key that extends that tree, and remembers it in --data before answering. So nobody,
    /// the log's operator included, can show a rewritten or forked history that carries this
    /// witness's cosignature. It prints its cosigner key (type 0x04), which logs and verifiers
    /// pin. Answers: 200 the cosignature line; 400 malformed; 403 not signed by the log key;
    /// 404 a log not watched; 409 not the size last cosigned (body: that size); 422 the
    /// consistency proof fails.
    #[command(
        after_help = "Example:\n  reman-ledger keygen --name witness.customs.example/w1 --out keys/witness.key\n  reman-ledger witness --data witness-data --key keys/witness.key --log keys/log.key.pub --listen 127.0.0.1:8090"
    )]
    Witness {
        /// The witness's state directory (created if missing).
        #[arg(long)]
        data: PathBuf,
        /// The witness's private key file (`keygen` makes one; its name is the witness's).
        #[arg(long)]
        key: PathBuf,
        /// A log to watch: its key (vkey) or a file holding it (.pub). Repeat for each log.
        #[arg(long = "log", value_name = "VKEY-or-FILE", required = true)]
        logs: Vec<String>,
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: String,
        #[command(flatten)]
        connections: ConnectionOpts,
    },
    /// Mirror another ledger: follow it, verify everything, serve the same read API.
    ///
    /// Fetches the followed ledger's checkpoint and new entries (tlog-tiles entry bundles)
    /// and each new certificate's seal, and appends them to its own store only after checking
    /// every entry as `audit` does, every seal and the Merkle root against the checkpoint
    /// signed by the log key. What cannot be verified is refused and tried again (/healthz
    /// shows the last failure, with both checkpoints for a rollback); what the log signed
    /// that proves it misbehaved (a fork, an entry against its rules) stops following. What
    /// was verified goes on being served. Submissions are refused (405).
    #[command(
        after_help = "Example:\n  reman-ledger mirror --from http://127.0.0.1:8080 --log-key keys/log.key.pub --data mirror-data --listen 127.0.0.1:8081"
    )]
    Mirror {
        /// The followed ledger's base URL.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The followed log's key: its vkey, or a file holding it (.pub).
        #[arg(long = "log-key", value_name = "VKEY-or-FILE")]
        log_key: String,
        /// The mirror's data directory (created if missing).
        #[arg(long, default_value = "mirror-data")]
        data: PathBuf,
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        /// Base URL of the QR links it serves (default http://<listen address>).
        #[arg(long = "base-url", value_name = "URL")]
        base_url: Option<String>,
        /// Milliseconds between rounds.
        #[arg(long = "interval-ms", default_value_t = 1000)]
        interval_ms: u64,
        /// Most entries appended in one step (a catch-up is split into steps).
        #[arg(long = "step-entries", default_value_t = reman_ledger::mirroring::STEP_ENTRIES, value_parser = clap::value_parser!(u64).range(1..))]
        step_entries: u64,
        /// Follow again after the followed log was found misbehaving (a fork, an entry
        /// against its rules): a mirror that stopped does not follow after a restart until
        /// then (the reason and evidence stay in /healthz and its log).
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        connections: ConnectionOpts,
    },
    #[command(after_long_help = VERIFY_HELP)]
    /// Verify a QR label, a QR URL or a certificate: offline with the log key, or with a server.
    ///
    /// Offline (no --server), the seal in the QR code is checked with the log's public key
    /// alone: it proves that the ledger logged a certificate for exactly this GTIN and serial.
    /// Prints the product (GTIN, serial), certificate ID, entry index, time and VALID or
    /// INVALID. The issuer and the status are not in the seal: add --server to see them.
    /// A .tlog-proof file (GET /api/v1/certificates/ID/proof) is checked offline too: its
    /// checkpoint is signed by the log key and the certificate's entry it carries is in that
    /// checkpoint's tree.
    ///
    /// With --server URL it also asks that ledger, and checks every answer with a proof: the
    /// fresh checkpoint is signed by the log key and extends the checkpoint seen last time
    /// (kept in the state file: a server that rewrote or rolled back its history is caught);
    /// the certificate's entry is in that checkpoint's tree (inclusion proof), holds this
    /// certificate and is signed by the issuer's registered key; each event and a revocation
    /// are in the log too. Only the status valid is VALID: revoked or superseded is INVALID.
    /// Not provable from one certificate's entries: that the server hides no later entry (a
    /// revocation), and who signed events (as the entries name them): `audit` checks those,
    /// and a mirror you run computes the status from the log itself.
    Verify(VerifyArgs),
}

/// The connection limits of a server command (`serve`, `mirror`, `witness`).
#[derive(Debug, clap::Args)]
struct ConnectionOpts {
    /// Most connections open at once; beyond it new clients wait until one closes.
    #[arg(long = "max-connections", value_name = "N", default_value_t = reman_ledger::server::DEFAULT_MAX_CONNECTIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=reman_ledger::server::MAX_CONNECTIONS as u64))]
    max_connections: usize,
    /// Seconds a client has to send a request's headers, and the longest a keep-alive
    /// connection may stay idle: slower or idle connections are closed.
    #[arg(long = "header-timeout", value_name = "SECONDS", default_value_t = reman_ledger::server::DEFAULT_HEADER_TIMEOUT_SECS as f64)]
    header_timeout: f64,
}

impl ConnectionOpts {
    fn limits(&self) -> Result<reman_ledger::server::ConnectionLimits, CliError> {
        let header_timeout = seconds(
            "--header-timeout",
            self.header_timeout,
            false,
            reman_ledger::server::MAX_HEADER_TIMEOUT_SECS,
        )?;
        Ok(reman_ledger::server::ConnectionLimits {
            max_connections: self.max_connections,
            header_timeout,
            ..Default::default()
        })
    }
}

/// A flag's number of seconds, up to `max` (and above 0 unless `zero` is allowed): a time far
/// in the future would overflow the clock it is added to.
fn seconds(flag: &str, value: f64, zero: bool, max: u64) -> Result<std::time::Duration, CliError> {
    std::time::Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| (zero || !d.is_zero()) && d.as_secs_f64() <= max as f64)
        .ok_or_else(|| {
            let low = if zero { "0 or more" } else { "above 0" };
            CliError::Usage(format!(
                "{flag}: a number of seconds, {low} and at most {max}"
            ))
        })
}

fn run(args: Args) -> Result<cli::Verdict, CliError> {
    match args.command {
        Command::Keygen { name, out } => println!("{}", cli::keygen(&name, &out)?),
        Command::Init {
            data,
            origin,
            log_key,
            operator_key,
            operator_name,
            display_name,
            country,
        } => {
            let opts = InitOptions {
                data,
                origin,
                log_key,
                operator_key,
                operator_name,
                operator: OperatorDetails {
                    display_name,
                    country,
                },
            };
            let (ledger, msg) = cli::init(&opts, LedgerConfig::default())?;
            ledger.close()?;
            println!("{msg}");
        }
        Command::Serve {
            data,
            log_key,
            listen,
            base_url,
            demo,
            witnesses,
            witness_wait,
            witness_quorum,
            connections,
        } => {
            let witness_wait = seconds("--witness-wait", witness_wait, true, 3600)?;
            let cmd = cli::ServeCommand {
                base_url,
                data,
                log_key,
                listen,
                demo,
                project_dir: PathBuf::from("."),
                witnesses,
                witness_wait,
                witness_quorum,
                connections: connections.limits()?,
            };
            cli::serve(cmd)?;
        }
        Command::Sign { key, kind, file } => {
            let signed = cli::sign(&key, kind.into(), &file)?;
            println!("{}", signed.envelope);
            if let Some(why) = signed.refused {
                eprintln!(
                    "warning: the ledger will refuse this payload: {why}\nIt is signed as it is all the same (exit 1), to try a ledger's refusals."
                );
                return Ok(cli::Verdict::NotValid);
            }
        }
        Command::Submit {
            server,
            log_key,
            json,
            envelope,
        } => {
            return cli::submit(&cli::SubmitCommand {
                server,
                envelope,
                log_key,
                json,
            });
        }
        Command::Issue {
            key,
            server,
            kind,
            qr_dir,
            qr_size,
            log_key,
            jobs,
            json,
            inputs,
        } => {
            return cli::issue(&cli::IssueCommand {
                key,
                server,
                kind: kind.into(),
                inputs,
                qr_dir,
                qr_size,
                log_key,
                jobs,
                json,
            });
        }
        Command::Audit {
            data,
            server,
            log_key,
            jobs,
            json,
            state,
        } => {
            return cli::audit(&cli::AuditCommand {
                data,
                server,
                log_key,
                jobs,
                json,
                state,
            });
        }
        Command::Export { data, out } => println!("{}", cli::export(&data, &out)?),
        Command::Witness {
            data,
            key,
            logs,
            listen,
            connections,
        } => cli::witness(cli::WitnessCommand {
            data,
            key,
            logs,
            listen,
            connections: connections.limits()?,
        })?,
        Command::Mirror {
            from,
            log_key,
            data,
            listen,
            base_url,
            interval_ms,
            step_entries,
            resume,
            connections,
        } => cli::mirror(cli::MirrorCommand {
            from,
            log_key,
            data,
            listen,
            base_url,
            interval: std::time::Duration::from_millis(interval_ms),
            step_entries,
            resume,
            connections: connections.limits()?,
        })?,
        Command::Verify(v) => verify_main(v)?,
    }
    Ok(cli::Verdict::Ok)
}

fn main() -> ExitCode {
    let args = Args::parse();
    // A server logs a line per request: those are written in chunks.
    let log = reman_ledger::logging::init(matches!(
        args.command,
        Command::Serve { .. } | Command::Mirror { .. }
    ));
    let result = run(args);
    // What the log still holds goes out before the verdict, in order.
    drop(log);
    match result {
        Ok(verdict) => ExitCode::from(verdict.exit_code() as u8),
        // An INVALID verdict is the report's last line already.
        Err(e @ CliError::NotValid(_)) => ExitCode::from(e.exit_code() as u8),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// The part of `verify --help` after the options.
const VERIFY_HELP: &str = "\
TARGET is one of:
  a QR URL         https://ledger.example/01/<GTIN>/21/<serial>?seal=...  (quote it in a shell)
  a QR image       a PNG or JPEG photo, scan or screenshot of the label
  a certificate ID 32 hex digits (needs --server)
  a proof file     FILE.tlog-proof, from GET /api/v1/certificates/<ID>/proof (C2SP tlog-proof:
                   the certificate's entry, its inclusion proof and the signed checkpoint),
                   checked offline with the log key alone; with --server also asked about

--witness W (repeatable): the checkpoint must carry witness W's cosignature (C2SP
tlog-cosignature): a proof file's checkpoint, else the ledger's checkpoint (needs --server).

The log key: --log-key gives it (the vkey text <name>+<key ID>+<key>, or a file such as the
log's .pub file). Otherwise the trust file lists the trusted logs, one vkey per line (# starts
a comment): --trust FILE, else $REMAN_LEDGER_TRUST, else
$XDG_CONFIG_HOME/reman-ledger/trusted-logs (~/.config/reman-ledger/trusted-logs). The seal's
key ID picks the key. With --server and no key pinned, the key remembered in the state file is
used; else the check is refused (exit 2), unless --trust-on-first-use accepts the server's own
key (with a warning) and remembers it.

The state file remembers the newest checkpoint seen of each log: --state FILE, else
$REMAN_LEDGER_STATE, else $XDG_STATE_HOME/reman-ledger/checkpoints.json
(~/.local/state/reman-ledger/checkpoints.json). It is created when missing.

Exit codes: 0 VALID; 1 checked and not valid (forged or altered label, wrong log key, unknown,
revoked or superseded certificate, a server that rewrote its history); 2 usage or I/O error
(unreadable file, no QR code found in the image, server unreachable).

The status and the list of events are the server's answer: every event and revocation it shows
is proven to be in the log, but one it leaves out (a hidden revocation) is not caught here.
`audit --server` compares what a server serves for every certificate with the whole log; for a
status you can rely on, verify against a mirror you run (`reman-ledger mirror`), which computes
it from the entries it verified. Witnesses make sure everyone sees the same log; they do not
vouch for a server's answers about it.

Examples:
  reman-ledger verify --log-key keys/log.key.pub label.jpg
  reman-ledger verify --server https://ledger.example 'https://ledger.example/01/...?seal=...'
  reman-ledger verify --server https://ledger.example --json 3f2a...c9";

/// The arguments of `verify`.
#[derive(clap::Args)]
struct VerifyArgs {
    /// A QR URL, a PNG or JPEG image of a QR label, a .tlog-proof file, or a certificate ID
    /// (with --server).
    target: String,
    /// The log's public key: a vkey (<name>+<key ID>+<key>) or a file holding it (.pub).
    #[arg(long, value_name = "VKEY-or-FILE")]
    log_key: Option<String>,
    /// Also ask this ledger: status, events, inclusion proof, checkpoint consistency.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// The trust file of log keys (default: $REMAN_LEDGER_TRUST or the XDG config file).
    #[arg(long, value_name = "FILE")]
    trust: Option<PathBuf>,
    /// The state file of checkpoints seen (default: $REMAN_LEDGER_STATE or the XDG state file).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// With --server and no pinned key: accept the key the server presents and remember it
    /// (like ssh's known hosts). Without it, an unpinned online check is refused (exit 2).
    #[arg(long)]
    trust_on_first_use: bool,
    /// A witness whose cosignature the checkpoint must carry (a .tlog-proof's, else the
    /// ledger's with --server): its cosigner key (printed by `reman-ledger witness`, not the
    /// key of its .pub file), or a file holding it. Repeat to require several.
    #[arg(long = "witness", value_name = "VKEY-or-FILE")]
    witnesses: Vec<String>,
    /// With --server: the longest all the server's answers may take together; a slow or
    /// stalling server then fails the check as unfinished (exit 2) instead of holding it.
    #[arg(long = "time-limit", value_name = "SECONDS", default_value_t = reman_ledger::verify::DEFAULT_TIME_LIMIT.as_secs_f64())]
    time_limit: f64,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `verify`, prints its report (warnings on stderr) and maps the verdict to the exit code.
fn verify_main(args: VerifyArgs) -> Result<(), CliError> {
    let time_limit = seconds("--time-limit", args.time_limit, false, 86_400)?;
    let opts = reman_ledger::verify::VerifyOptions {
        time_limit,
        target: args.target,
        log_key: args.log_key,
        trust: args.trust,
        server: args.server,
        state: args.state,
        trust_on_first_use: args.trust_on_first_use,
        witnesses: args.witnesses,
    };
    match reman_ledger::verify::verify(&opts) {
        Ok(report) => {
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            match report.reason {
                _ if report.valid => Ok(()),
                reason => Err(CliError::NotValid(reason.unwrap_or_default())),
            }
        }
        Err(e) => {
            if args.json {
                println!("{}", reman_ledger::verify::error_json(&e));
            }
            Err(e.into())
        }
    }
}
