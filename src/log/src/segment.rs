//! One segment: a file of record batches exactly as appended, plus its sparse indexes.
//!
//! Files, named by the segment's base offset (20 digits, as Kafka does):
//! - `N.log`: batches back to back, offsets strictly increasing.
//! - `N.index`: entries of (relative offset u32, file position u32), big-endian, every
//!   `index.interval.bytes` of log; an entry names the first byte of a batch.
//! - `N.timeindex`: one entry of (timestamp i64, relative offset u32) per offset-index entry:
//!   the timestamp is the largest max timestamp of all batches *before* that offset, so a
//!   search for the first batch with max timestamp >= T may start at the last entry whose
//!   timestamp is < T. A trailer entry holds the segment's max timestamp and its batch.
//!
//! Indexes live in memory while the segment is active and are written when it is closed
//! (rolled, or at clean shutdown). A missing or inconsistent index file is rebuilt by scanning
//! batch headers; an unclean shutdown validates the active segment batch by batch (CRC32C) and
//! truncates a torn tail.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, IoSlice, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{peek_offset_and_len, validate_stored_batch, BatchHeader, RewrittenBatch, HEADER_LEN};
use crate::files::SegmentFile;
use crate::{io_err, LogError};

/// How the tail of a segment is checked when it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// Trust complete batches (clean shutdown or a segment below the recovery point); only
    /// headers are read, and only where the index does not already cover them.
    Trust,
    /// Validate every batch's CRC and truncate at the first bad or torn one.
    Recover,
}

pub(crate) fn file_name(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    dir: PathBuf,
    /// The segment's file, opened on demand (see [`crate::files`]).
    pub(crate) file: Arc<SegmentFile>,
    /// Bytes of complete batches.
    pub(crate) size: u64,
    /// One past the last offset in the segment (== base_offset when empty).
    pub(crate) next_offset: i64,
    /// Largest batch max timestamp, and the base offset of the batch holding it (-1: none).
    pub(crate) max_timestamp: i64,
    pub(crate) max_timestamp_batch: i64,
    /// When the segment was created, for segment.ms.
    pub(crate) created_ms: i64,
    index: Vec<(u32, u32)>,
    time_index: Vec<(i64, u32)>,
    bytes_since_index: u64,
    index_interval_bytes: u64,
}

impl Segment {
    fn empty(dir: &Path, base_offset: i64, file: File, created_ms: i64, index_interval_bytes: u32) -> Self {
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            file: SegmentFile::with_open(&file_name(dir, base_offset, "log"), file),
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            max_timestamp_batch: -1,
            created_ms,
            index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index: 0,
            index_interval_bytes: index_interval_bytes as u64,
        }
    }

    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        index_interval_bytes: u32,
    ) -> Result<Self, LogError> {
        let path = file_name(dir, base_offset, "log");
        // O_APPEND: every write lands at the end, also after a truncation.
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(e, format!("create {}", path.display())))?;
        file.set_len(0).map_err(|e| io_err(e, format!("truncate {}", path.display())))?;
        Ok(Segment::empty(dir, base_offset, file, now_ms, index_interval_bytes))
    }

    /// Opens an existing segment. Returns it, sized to its last good batch, and the file length
    /// when bytes after that batch could not be read (the caller decides whether to truncate).
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        mode: OpenMode,
        now_ms: i64,
        index_interval_bytes: u32,
    ) -> Result<(Self, Option<u64>), LogError> {
        let path = file_name(dir, base_offset, "log");
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(e, format!("open {}", path.display())))?;
        let meta = file.metadata().map_err(|e| io_err(e, format!("stat {}", path.display())))?;
        let file_len = meta.len();
        let created_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or(now_ms);
        let mut seg = Segment::empty(dir, base_offset, file, created_ms, index_interval_bytes);
        // Where the header scan starts: from the last indexed batch when the index files are
        // sound and we trust the data, else from the start.
        let mut scan_from = 0u64;
        if mode == OpenMode::Trust {
            let loaded = seg
                .load_index_files(file_len)
                .filter(|(index, _, _)| seg.entry_points_at_batch(index.last().copied(), file_len));
            if let Some((index, time_index, max_ts)) = loaded {
                if let Some(&(rel, pos)) = index.last() {
                    scan_from = pos as u64;
                    seg.next_offset = base_offset + rel as i64;
                }
                seg.index = index;
                seg.time_index = time_index;
                if let Some((ts, batch)) = max_ts {
                    seg.max_timestamp = ts;
                    seg.max_timestamp_batch = batch;
                }
            }
        }
        // Entries at or past scan_from are re-added by the scan.
        if let Some(&(_, pos)) = seg.index.last() {
            if pos as u64 >= scan_from {
                seg.index.pop();
            }
        }
        let valid_end = seg.scan_from(scan_from, file_len, mode == OpenMode::Recover)?;
        let truncated = valid_end < file_len;
        seg.size = valid_end;
        Ok((seg, truncated.then_some(file_len)))
    }

    /// True when an index entry names the start of the batch it claims (or there is none):
    /// a cheap check that catches index files that are well-formed but stale or corrupt.
    fn entry_points_at_batch(&self, entry: Option<(u32, u32)>, file_len: u64) -> bool {
        let Some((rel, pos)) = entry else { return true };
        let mut head = [0u8; HEADER_LEN];
        let Ok(file) = self.file.get() else { return false };
        if pos as u64 + HEADER_LEN as u64 > file_len || file.read_exact_at(&mut head, pos as u64).is_err() {
            return false;
        }
        BatchHeader::parse(&head).is_ok_and(|h| h.base_offset == self.base_offset + rel as i64)
    }

    /// Walks batches from `pos` to `file_len`, adding index entries and tracking offsets and
    /// timestamps. Returns the end of the last good batch.
    fn scan_from(&mut self, mut pos: u64, file_len: u64, validate: bool) -> Result<u64, LogError> {
        let file = self.file.get()?;
        let mut reader = BufReader::with_capacity(1 << 20, PosReader { file: &file, pos });
        let mut buf = Vec::new();
        let mut head = [0u8; HEADER_LEN];
        let mut prev_next = self.next_offset;
        while pos + HEADER_LEN as u64 <= file_len {
            if reader.read_exact(&mut head).is_err() {
                break;
            }
            let Some((_, len)) = peek_offset_and_len(&head) else { break };
            if len < HEADER_LEN || pos + len as u64 > file_len {
                break;
            }
            let header = if validate {
                buf.clear();
                buf.extend_from_slice(&head);
                buf.resize(len, 0);
                if reader.read_exact(&mut buf[HEADER_LEN..]).is_err() {
                    break;
                }
                match validate_stored_batch(&buf) {
                    Ok(h) => h,
                    Err(_) => break,
                }
            } else {
                let Ok(h) = BatchHeader::parse(&head) else { break };
                if reader.seek_relative((len - HEADER_LEN) as i64).is_err() {
                    break;
                }
                h
            };
            if header.base_offset < prev_next || header.last_offset_delta < 0 {
                // Offsets must increase; anything else is not ours.
                break;
            }
            self.note_batch(pos, &header);
            prev_next = header.next_offset();
            pos += len as u64;
        }
        Ok(pos)
    }

    /// Records a batch written at `pos` in the in-memory indexes and counters.
    fn note_batch(&mut self, pos: u64, h: &BatchHeader) {
        let rel = (h.base_offset - self.base_offset) as u32;
        if self.index.is_empty() || self.bytes_since_index >= self.index_interval_bytes {
            self.index.push((rel, pos as u32));
            self.time_index.push((self.max_timestamp, rel));
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.total_len() as u64;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.max_timestamp_batch = h.base_offset;
        }
        self.next_offset = h.next_offset();
    }

    /// Appends already re-headered batches; returns the file position of the first.
    pub(crate) fn append(&mut self, batches: &[RewrittenBatch]) -> Result<u64, LogError> {
        let start = self.size;
        let mut slices = Vec::with_capacity(batches.len() * 2);
        for b in batches {
            slices.push(IoSlice::new(&b.header));
            slices.push(IoSlice::new(&b.body));
        }
        let total: usize = batches.iter().map(|b| b.len()).sum();
        let file = self.file.get()?;
        write_all_vectored_at_end(&file, &mut slices, total).map_err(|e| {
            // A partial write leaves bytes past `size`; drop them so the log stays whole.
            let _ = file.set_len(start);
            io_err(e, format!("append to segment {}", self.base_offset))
        })?;
        let mut pos = start;
        for b in batches {
            // The rewritten header was produced from a validated batch.
            let h = BatchHeader::parse(&b.header)
                .map_err(|e| LogError::InvalidRecord(format!("rewritten header: {e}")))?;
            self.note_batch(pos, &h);
            pos += b.len() as u64;
        }
        self.size = pos;
        Ok(start)
    }

    /// File position of the last indexed batch at or before `offset`: where a scan for it starts.
    pub(crate) fn index_floor(&self, offset: i64) -> u64 {
        if offset <= self.base_offset {
            return 0;
        }
        let rel = (offset - self.base_offset).min(u32::MAX as i64) as u32;
        let idx = self.index.partition_point(|&(r, _)| r <= rel);
        if idx == 0 {
            0
        } else {
            self.index[idx - 1].1 as u64
        }
    }

    /// File position of the batch containing `offset`, or of the first batch after it.
    /// Returns None when the segment has nothing at or after `offset`.
    pub(crate) fn position_of(&self, offset: i64, size: u64) -> Result<Option<u64>, LogError> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        find_batch(&*self.file.get()?, self.index_floor(offset), size, offset)
    }

    /// Calls `f` with every batch header in the segment, in order (reads headers only).
    pub(crate) fn for_each_header(&self, mut f: impl FnMut(&BatchHeader)) -> Result<(), LogError> {
        let file = self.file.get()?;
        let mut reader = BufReader::with_capacity(1 << 20, PosReader { file: &file, pos: 0 });
        let mut head = [0u8; HEADER_LEN];
        let mut pos = 0u64;
        while pos + HEADER_LEN as u64 <= self.size {
            reader.read_exact(&mut head).map_err(|e| io_err(e, "read batch header"))?;
            let h = BatchHeader::parse(&head)?;
            f(&h);
            let len = h.total_len();
            reader.seek_relative((len - HEADER_LEN) as i64).map_err(|e| io_err(e, "seek segment"))?;
            pos += len as u64;
        }
        Ok(())
    }

    /// Position of the first batch whose max timestamp is >= `ts`, scanning from the time index.
    pub(crate) fn position_of_timestamp(
        &self,
        ts: i64,
        size: u64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let idx = self.time_index.partition_point(|&(t, _)| t < ts);
        let start_rel = if idx == 0 { 0 } else { self.time_index[idx - 1].1 };
        let start_offset = self.base_offset + start_rel as i64;
        let Some(mut pos) = self.position_of(start_offset, size)? else { return Ok(None) };
        let file = self.file.get()?;
        let mut head = [0u8; HEADER_LEN];
        while pos + HEADER_LEN as u64 <= size {
            file.read_exact_at(&mut head, pos).map_err(|e| io_err(e, "read batch header"))?;
            let h = BatchHeader::parse(&head)?;
            if h.max_timestamp >= ts {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Reads whole batches from `pos`, at most `max_bytes` unless the first batch alone is
    /// larger (then exactly that batch, as KIP-74 asks), never past `size`.
    pub(crate) fn read_batches(&self, pos: u64, max_bytes: usize, size: u64) -> Result<Bytes, LogError> {
        read_batches_from(&*self.file.get()?, pos, max_bytes, size)
    }

    /// Cuts the file at `size` (the end of the last good batch).
    pub(crate) fn truncate_file_to_size(&self) -> Result<(), LogError> {
        self.file
            .get()?
            .set_len(self.size)
            .map_err(|e| io_err(e, format!("truncate segment {}", self.base_offset)))
    }

    /// A copy of the in-memory indexes that can be written without holding the log's lock.
    pub(crate) fn index_snapshot(&self) -> IndexSnapshot {
        IndexSnapshot {
            dir: self.dir.clone(),
            base_offset: self.base_offset,
            index: self.index.clone(),
            time_index: self.time_index.clone(),
            max_timestamp: self.max_timestamp,
            max_timestamp_batch: self.max_timestamp_batch,
        }
    }

    /// Writes the index files (atomically). Called when the segment stops being active and at
    /// clean shutdown.
    pub(crate) fn write_index_files(&self) -> Result<(), LogError> {
        self.index_snapshot().write()
    }

    /// Loads index files if present and consistent with a log of `file_len` bytes.
    #[allow(clippy::type_complexity)]
    fn load_index_files(
        &self,
        file_len: u64,
    ) -> Option<(Vec<(u32, u32)>, Vec<(i64, u32)>, Option<(i64, i64)>)> {
        let idx = fs::read(file_name(&self.dir, self.base_offset, "index")).ok()?;
        let tidx = fs::read(file_name(&self.dir, self.base_offset, "timeindex")).ok()?;
        if idx.len() % 8 != 0 || tidx.len() % 12 != 0 || tidx.is_empty() {
            return None;
        }
        let mut index = Vec::with_capacity(idx.len() / 8);
        for c in idx.chunks_exact(8) {
            let rel = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            let pos = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
            if let Some(&(r, p)) = index.last() {
                if rel <= r || pos <= p {
                    return None;
                }
            }
            if pos as u64 >= file_len.max(1) {
                return None;
            }
            index.push((rel, pos));
        }
        let mut time_index = Vec::with_capacity(tidx.len() / 12);
        for c in tidx.chunks_exact(12) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&c[..8]);
            let rel = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
            time_index.push((i64::from_be_bytes(t), rel));
        }
        let (max_ts, max_rel) = time_index.pop()?;
        if time_index.len() != index.len() {
            return None;
        }
        let max = (max_rel != u32::MAX).then(|| (max_ts, self.base_offset + max_rel as i64));
        Some((index, time_index, max))
    }

    pub(crate) fn delete_files(&self) -> Result<(), LogError> {
        for ext in ["log", "index", "timeindex"] {
            let p = file_name(&self.dir, self.base_offset, ext);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(e, format!("delete {}", p.display()))),
            }
        }
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }
}

/// The indexes of one segment, detached from it.
#[derive(Debug, Clone)]
pub(crate) struct IndexSnapshot {
    dir: PathBuf,
    base_offset: i64,
    index: Vec<(u32, u32)>,
    time_index: Vec<(i64, u32)>,
    max_timestamp: i64,
    max_timestamp_batch: i64,
}

impl IndexSnapshot {
    pub(crate) fn write(&self) -> Result<(), LogError> {
        let mut idx = Vec::with_capacity(self.index.len() * 8);
        for &(rel, pos) in &self.index {
            idx.extend_from_slice(&rel.to_be_bytes());
            idx.extend_from_slice(&pos.to_be_bytes());
        }
        let mut tidx = Vec::with_capacity((self.time_index.len() + 1) * 12);
        for &(ts, rel) in &self.time_index {
            tidx.extend_from_slice(&ts.to_be_bytes());
            tidx.extend_from_slice(&rel.to_be_bytes());
        }
        // Trailer entry: the segment's max timestamp and the batch holding it.
        let max_rel = if self.max_timestamp_batch >= 0 {
            (self.max_timestamp_batch - self.base_offset) as u32
        } else {
            u32::MAX
        };
        tidx.extend_from_slice(&self.max_timestamp.to_be_bytes());
        tidx.extend_from_slice(&max_rel.to_be_bytes());
        write_atomic(&file_name(&self.dir, self.base_offset, "index"), &idx)?;
        write_atomic(&file_name(&self.dir, self.base_offset, "timeindex"), &tidx)?;
        Ok(())
    }
}

/// Sequential reads at our own position with `pread`: the file's shared cursor belongs to the
/// O_APPEND writer and moves with every append.
struct PosReader<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for PosReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for PosReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(_) => None,
        };
        self.pos =
            new.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "unsupported seek"))?;
        Ok(self.pos)
    }
}

/// Scans batch headers from `pos` for the batch holding `offset` (or the first after it).
pub(crate) fn find_batch(file: &File, mut pos: u64, size: u64, offset: i64) -> Result<Option<u64>, LogError> {
    let mut head = [0u8; HEADER_LEN];
    while pos + HEADER_LEN as u64 <= size {
        file.read_exact_at(&mut head, pos).map_err(|e| io_err(e, "read batch header"))?;
        let h = BatchHeader::parse(&head)?;
        if h.last_offset() >= offset {
            return Ok(Some(pos));
        }
        pos += h.total_len() as u64;
    }
    Ok(None)
}

/// Reads whole batches starting at `pos` (see [`Segment::read_batches`]).
pub(crate) fn read_batches_from(
    file: &File,
    pos: u64,
    max_bytes: usize,
    size: u64,
) -> Result<Bytes, LogError> {
    if pos >= size {
        return Ok(Bytes::new());
    }
    let avail = (size - pos) as usize;
    let want = avail.min(max_bytes.max(HEADER_LEN));
    let mut buf = read_at_uninit(file, want, pos)?;
    // Cut at the last whole batch.
    let mut end = 0usize;
    while let Some((_, len)) = peek_offset_and_len(&buf[end..]) {
        if end + len > buf.len() {
            break;
        }
        end += len;
    }
    if end == 0 {
        // The first batch is larger than max_bytes: return it whole.
        let (_, len) = peek_offset_and_len(&buf)
            .ok_or_else(|| LogError::CorruptBatch(format!("bad batch header at position {pos}")))?;
        if len as u64 > (size - pos) {
            return Err(LogError::CorruptBatch(format!("batch at position {pos} runs past the segment")));
        }
        let whole = read_at_uninit(file, len, pos)?;
        return Ok(Bytes::from(whole));
    }
    buf.truncate(end);
    read_ahead(file, pos + end as u64, end as u64, size);
    Ok(Bytes::from(buf))
}

/// Reads exactly `len` bytes at `pos` into a new buffer without zero-filling it first (the
/// fetch path reads megabytes per request; zeroing them was a measurable share of its CPU).
fn read_at_uninit(file: &File, len: usize, pos: u64) -> Result<Vec<u8>, LogError> {
    let mut v: Vec<u8> = Vec::with_capacity(len);
    while v.len() < len {
        let at = pos + v.len() as u64;
        let n = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut v), at)
            .map_err(|e| io_err(e.into(), "read segment"))?;
        if n == 0 {
            return Err(io_err(
                std::io::ErrorKind::UnexpectedEof.into(),
                "read segment: unexpected end of file",
            ));
        }
    }
    v.truncate(len);
    Ok(v)
}

/// Catch-up consumers read a segment front to back: after serving `[.., from)`, ask the kernel
/// to start reading the next `4 * last_read` bytes in the background, so the next fetch finds
/// them in the page cache instead of waiting on the disk. A hint: errors are ignored, and for
/// data already cached it costs one cheap syscall.
fn read_ahead(file: &File, from: u64, last_read: u64, size: u64) {
    if from >= size {
        return;
    }
    let len = (last_read.saturating_mul(4)).min(size - from);
    if let Some(len) = std::num::NonZeroU64::new(len) {
        let _ = rustix::fs::fadvise(file, from, Some(len), rustix::fs::Advice::WillNeed);
    }
}

fn write_all_vectored_at_end(file: &File, slices: &mut [IoSlice<'_>], total: usize) -> std::io::Result<()> {
    let mut f = file;
    let mut written = 0usize;
    let mut bufs: &mut [IoSlice<'_>] = slices;
    while written < total {
        let n = f.write_vectored(bufs)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "wrote zero bytes"));
        }
        written += n;
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

/// Writes `data` to `path` via a temporary file, fsync and rename.
/// fsyncs a directory, so a rename or unlink in it is durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(e, format!("fsync directory {}", dir.display())))
}

pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), LogError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| io_err(e, format!("create {}", tmp.display())))?;
    f.write_all(data).map_err(|e| io_err(e, format!("write {}", tmp.display())))?;
    f.sync_all().map_err(|e| io_err(e, format!("fsync {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(|e| io_err(e, format!("rename {}", path.display())))?;
    Ok(())
}
