//! The process's log output: `tracing` lines on stderr, written in chunks.
//!
//! A serving ledger logs one line per request. Written with one `write` call each, stderr cost
//! about 1.9 µs of CPU per request, as much as a cached lookup's whole JSON encoding
//! (BENCHMARKS.md, "Session 6"). Here lines below WARN go to a shared buffer instead, which a
//! background thread writes out [`FLUSH_AFTER`] after its first line arrived, with one call:
//! under load, one write per hundreds of lines. WARN and ERROR lines are written at once, after
//! whatever is buffered, so that a problem reaches the terminal before the process can die of
//! it, in order. [`init`] returns a guard that writes what is left when `main` returns; a
//! process killed outright loses at most the last [`FLUSH_AFTER`] of INFO lines. Commands
//! other than `serve` log a few lines between their own output: theirs are written at once.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// How long a buffered line may wait before it is written.
pub const FLUSH_AFTER: Duration = Duration::from_millis(20);

/// A buffer this large is written by the thread that fills it, without waiting for the
/// background thread: what a stalled stderr (a pipe nobody reads) can make the process hold.
pub const MAX_BUFFERED: usize = 4 << 20;

/// Lines waiting to be written, and whether the writer thread should stop.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    stop: bool,
}

struct Shared<W> {
    pending: Mutex<Pending>,
    /// Signalled when the buffer gets its first line, and at shutdown.
    wake: Condvar,
    /// The sink. Taken before the buffer is emptied into it, so that lines leave in the
    /// order they were buffered whoever writes them.
    sink: Mutex<W>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<W: Write> Shared<W> {
    /// Writes everything buffered so far, then `line` (if any), to the sink.
    fn write_out(&self, line: &[u8]) {
        let mut sink = lock(&self.sink);
        let buf = std::mem::take(&mut lock(&self.pending).buf);
        // Nothing sensible can be done if stderr itself fails.
        let _ = sink.write_all(&buf);
        let _ = sink.write_all(line);
        let _ = sink.flush();
    }
}

/// A [`MakeWriter`] that buffers lines below WARN and writes the others at once (see the
/// module doc). Cloning it shares the buffer.
pub struct ChunkedWriter<W> {
    shared: Arc<Shared<W>>,
}

impl<W> Clone for ChunkedWriter<W> {
    fn clone(&self) -> Self {
        ChunkedWriter {
            shared: self.shared.clone(),
        }
    }
}

/// Writes what is still buffered, and stops the background thread, when dropped.
pub struct FlushGuard<W: Write + Send + 'static> {
    shared: Arc<Shared<W>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<W: Write + Send + 'static> ChunkedWriter<W> {
    /// A writer over `sink`, with its background thread, and the guard that flushes it.
    pub fn new(sink: W) -> (ChunkedWriter<W>, FlushGuard<W>) {
        let (writer, mut guard) = ChunkedWriter::unbuffered(sink);
        // Buffering from now on, before the thread looks.
        lock(&guard.shared.pending).stop = false;
        let bg = guard.shared.clone();
        guard.thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || background(&bg))
            .ok();
        // Without a background thread (the system refused one), every line is written at once.
        if guard.thread.is_none() {
            lock(&guard.shared.pending).stop = true;
        }
        (writer, guard)
    }

    /// A writer over `sink` that writes every line at once (for commands that run briefly
    /// and interleave their own stderr output with log lines).
    pub fn unbuffered(sink: W) -> (ChunkedWriter<W>, FlushGuard<W>) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                stop: true,
            }),
            wake: Condvar::new(),
            sink: Mutex::new(sink),
        });
        let guard = FlushGuard {
            shared: shared.clone(),
            thread: None,
        };
        (ChunkedWriter { shared }, guard)
    }
}

/// The background thread: waits for a first buffered line, lets more gather for
/// [`FLUSH_AFTER`], writes them all, until told to stop.
fn background<W: Write>(shared: &Shared<W>) {
    loop {
        {
            let mut p = lock(&shared.pending);
            while p.buf.is_empty() && !p.stop {
                p = shared.wake.wait(p).unwrap_or_else(PoisonError::into_inner);
            }
            if p.stop {
                return;
            }
        }
        std::thread::sleep(FLUSH_AFTER);
        shared.write_out(&[]);
    }
}

impl<W: Write + Send + 'static> Drop for FlushGuard<W> {
    fn drop(&mut self) {
        lock(&self.shared.pending).stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.write_out(&[]);
    }
}

/// One event's writer: buffered, or written at once.
pub struct LineWriter<'a, W: Write> {
    shared: &'a Shared<W>,
    direct: bool,
}

impl<W: Write> Write for LineWriter<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.direct {
            self.shared.write_out(bytes);
            return Ok(bytes.len());
        }
        let mut p = lock(&self.shared.pending);
        if p.stop {
            drop(p);
            self.shared.write_out(bytes);
            return Ok(bytes.len());
        }
        let first = p.buf.is_empty();
        p.buf.extend_from_slice(bytes);
        let full = p.buf.len() >= MAX_BUFFERED;
        drop(p);
        if full {
            self.shared.write_out(&[]);
        } else if first {
            self.shared.wake.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + Send + 'static> MakeWriter<'a> for ChunkedWriter<W> {
    type Writer = LineWriter<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
            direct: true,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
            direct: *meta.level() <= tracing::Level::WARN,
        }
    }
}

/// Installs the process's log subscriber: `RUST_LOG` (default `info`), on stderr, in chunks
/// when `chunked` (a server), else line by line. Keep the guard until the process ends:
/// dropping it writes what is still buffered.
pub fn init(chunked: bool) -> FlushGuard<std::io::Stderr> {
    let (writer, guard) = if chunked {
        ChunkedWriter::new(std::io::stderr())
    } else {
        ChunkedWriter::unbuffered(std::io::stderr())
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    guard
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read, counting the write calls it got.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let mut s = lock(&self.0);
            s.0.extend_from_slice(b);
            s.1 += usize::from(!b.is_empty());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).0.clone()).unwrap()
        }
        fn writes(&self) -> usize {
            lock(&self.0).1
        }
    }

    /// Logs `text` at `level` through a real `fmt` subscriber writing to `w`.
    fn line(w: &ChunkedWriter<Sink>, level: tracing::Level, text: &str) {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(w.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_level(false)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        tracing::subscriber::with_default(subscriber, || match level {
            tracing::Level::ERROR => tracing::error!("{text}"),
            tracing::Level::WARN => tracing::warn!("{text}"),
            tracing::Level::INFO => tracing::info!("{text}"),
            tracing::Level::DEBUG => tracing::debug!("{text}"),
            tracing::Level::TRACE => tracing::trace!("{text}"),
        });
    }

    #[test]
    fn info_lines_are_written_together_after_a_short_wait() {
        let sink = Sink::default();
        let (w, _guard) = ChunkedWriter::new(sink.clone());
        for i in 0..100 {
            line(&w, tracing::Level::INFO, &format!("request {i}"));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.text().lines().count() < 100 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let text = sink.text();
        let expected: String = (0..100).map(|i| format!("request {i}\n")).collect();
        assert_eq!(text, expected);
        assert!(sink.writes() <= 3, "{} writes for 100 lines", sink.writes());
    }

    #[test]
    fn a_warning_is_written_at_once_after_the_lines_before_it() {
        let sink = Sink::default();
        let (w, _guard) = ChunkedWriter::new(sink.clone());
        line(&w, tracing::Level::INFO, "one");
        line(&w, tracing::Level::INFO, "two");
        line(&w, tracing::Level::WARN, "trouble");
        // No waiting: the warning's own write carried the buffered lines before it.
        assert_eq!(sink.text(), "one\ntwo\ntrouble\n");
        line(&w, tracing::Level::ERROR, "worse");
        assert_eq!(sink.text(), "one\ntwo\ntrouble\nworse\n");
    }

    #[test]
    fn dropping_the_guard_writes_what_is_left() {
        let sink = Sink::default();
        let (w, guard) = ChunkedWriter::new(sink.clone());
        line(&w, tracing::Level::INFO, "last words");
        drop(guard);
        assert_eq!(sink.text(), "last words\n");
        // After the guard, lines are written at once.
        line(&w, tracing::Level::DEBUG, "after");
        assert_eq!(sink.text(), "last words\nafter\n");
    }

    #[test]
    fn an_unbuffered_writer_writes_each_line_at_once() {
        let sink = Sink::default();
        let (w, _guard) = ChunkedWriter::unbuffered(sink.clone());
        line(&w, tracing::Level::INFO, "now");
        assert_eq!(sink.text(), "now\n");
        line(&w, tracing::Level::DEBUG, "and now");
        assert_eq!(sink.text(), "now\nand now\n");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_thread_that_fills_it() {
        let sink = Sink::default();
        let (w, _guard) = ChunkedWriter::new(sink.clone());
        let big = "x".repeat(MAX_BUFFERED);
        line(&w, tracing::Level::INFO, &big);
        assert_eq!(sink.text(), format!("{big}\n"));
    }
}
