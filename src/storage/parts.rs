//! Cutting a stream of chunks into upload parts of exactly `PART_SIZE`.

use bytes::{Bytes, BytesMut};

/// Gathers a stream's chunks into parts of exactly `PART_SIZE` bytes, each
/// in an allocation of that size (a buffer that grew past a part would
/// double its allocation, and memory per upload with it).
pub struct PartBuffer {
    buf: BytesMut,
}

impl PartBuffer {
    pub fn new(start: &[u8]) -> PartBuffer {
        let mut parts = PartBuffer { buf: BytesMut::with_capacity(super::PART_SIZE) };
        parts.buf.extend_from_slice(start);
        parts
    }

    /// Adds `chunk`; returns the parts it completed (most often none).
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<Bytes> {
        let mut full = Vec::new();
        while !chunk.is_empty() {
            let take = (super::PART_SIZE - self.buf.len()).min(chunk.len());
            self.buf.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.buf.len() == super::PART_SIZE {
                full.push(std::mem::replace(&mut self.buf, BytesMut::with_capacity(super::PART_SIZE)).freeze());
            }
        }
        full
    }

    /// The bytes not yet in a full part.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_rest(self) -> Bytes {
        self.buf.freeze()
    }
}
