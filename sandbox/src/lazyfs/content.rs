//! A file's bytes as shared pages: copying a file (what an fsync does, cached → durable) copies
//! page pointers, and a later write copies only the pages it changes.

use std::io::{self, Write};
use std::sync::Arc;

const PAGE: usize = 64 * 1024;
/// Larger files are refused (EFBIG): the page table of a sparse file stays small.
pub(super) const MAX_LEN: u64 = 1 << 32;

/// The bytes of a regular file. Pages past the end are gone and bytes of the last page past the
/// end are zero, so growing a file shows zeros. `None` is a page of zeros (a hole).
#[derive(Clone, Debug, Default)]
pub(super) struct Content {
    len: u64,
    pages: Vec<Option<Arc<Vec<u8>>>>,
}

impl Content {
    pub(super) fn from_bytes(bytes: &[u8]) -> Content {
        let mut content = Content::default();
        content.write(0, bytes);
        content
    }

    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Up to `size` bytes from `offset` (fewer at the end of the file).
    pub(super) fn read(&self, offset: u64, size: usize) -> Vec<u8> {
        let end = self.len.min(offset.saturating_add(size as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let (index, start) = split(at);
            let take = (PAGE - start).min((end - at) as usize);
            match &self.pages[index] {
                Some(page) => out.extend_from_slice(&page[start..start + take]),
                None => out.resize(out.len() + take, 0),
            }
            at += take as u64;
        }
        out
    }

    /// Writes `data` at `offset`, growing the file (with zeros before `offset`) if needed. The
    /// caller checks `offset + data.len()` against [`MAX_LEN`].
    pub(super) fn write(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        if end > self.len {
            self.set_len(end);
        }
        let mut done = 0;
        while done < data.len() {
            let (index, start) = split(offset + done as u64);
            let take = (PAGE - start).min(data.len() - done);
            let page = self.pages[index].get_or_insert_with(|| Arc::new(vec![0; PAGE]));
            Arc::make_mut(page)[start..start + take].copy_from_slice(&data[done..done + take]);
            done += take;
        }
    }

    /// Truncates or extends (with zeros) to `len` bytes.
    pub(super) fn set_len(&mut self, len: u64) {
        let pages = len.div_ceil(PAGE as u64) as usize;
        if len < self.len {
            self.pages.truncate(pages);
            let (index, start) = split(len);
            match self.pages.get_mut(index) {
                Some(Some(page)) if start > 0 => Arc::make_mut(page)[start..].fill(0),
                _ => {}
            }
        } else {
            self.pages.resize(pages, None);
        }
        self.len = len;
    }

    /// Writes the whole content to `out`.
    pub(super) fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let zeros = vec![0; PAGE];
        let mut left = self.len;
        for page in &self.pages {
            let take = (PAGE as u64).min(left) as usize;
            out.write_all(&page.as_deref().unwrap_or(&zeros)[..take])?;
            left -= take as u64;
        }
        Ok(())
    }
}

/// The page holding byte `at`, and where in it.
fn split(at: u64) -> (usize, usize) {
    ((at / PAGE as u64) as usize, (at % PAGE as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(content: &Content) -> Vec<u8> {
        let mut out = Vec::new();
        content.write_to(&mut out).unwrap();
        assert_eq!(out, content.read(0, usize::MAX));
        out
    }

    #[test]
    fn writes_across_pages_and_holes_read_back_as_written() {
        let mut content = Content::default();
        content.write(PAGE as u64 * 2 + 10, b"far");
        content.write(PAGE as u64 - 2, b"abcd");
        let mut expected = vec![0; PAGE * 2 + 13];
        expected[PAGE - 2..PAGE + 2].copy_from_slice(b"abcd");
        expected[PAGE * 2 + 10..].copy_from_slice(b"far");
        assert_eq!(bytes(&content), expected);
        assert_eq!(content.read(PAGE as u64 - 1, 2), b"bc");
        assert_eq!(content.read(content.len() + 5, 10), b"");
    }

    #[test]
    fn shrinking_then_growing_shows_zeros() {
        let mut content = Content::from_bytes(&[7; 100]);
        content.set_len(10);
        content.set_len(20);
        let mut expected = vec![7; 10];
        expected.resize(20, 0);
        assert_eq!(bytes(&content), expected);
    }

    #[test]
    fn a_copy_does_not_see_later_writes() {
        let mut cached = Content::from_bytes(b"durable");
        let durable = cached.clone();
        cached.write(0, b"DU");
        cached.set_len(3);
        assert_eq!(bytes(&durable), b"durable");
        assert_eq!(bytes(&cached), b"DUr");
    }
}
