//! Snapshot bytes as openraft reads and writes them: a cursor over a shared buffer.
//!
//! openraft asks for the current snapshot on its state machine task, the one that applies
//! entries, whenever a follower needs it, and reads it back in chunks; with a
//! `Cursor<Vec<u8>>` each ask copied the whole snapshot (hundreds of MB at 10 M balances)
//! between two applies. A clone of [`SnapshotBytes`] is a reference count; a write (receiving
//! a snapshot) goes to a buffer of its own, copied first only if it is shared.

use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// A position in shared snapshot bytes (module doc).
#[derive(Debug, Clone, Default)]
pub struct SnapshotBytes {
    data: Arc<Vec<u8>>,
    pos: u64,
}

impl SnapshotBytes {
    /// A cursor at the start of `data`, sharing it.
    pub fn shared(data: Arc<Vec<u8>>) -> SnapshotBytes {
        SnapshotBytes { data, pos: 0 }
    }

    /// The bytes, shared with any clone.
    pub fn into_inner(self) -> Arc<Vec<u8>> {
        self.data
    }

    fn position(&self) -> io::Result<usize> {
        usize::try_from(self.pos).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    }

    /// Writes `buf` at the position, as `std::io::Cursor<Vec<u8>>` does: over what is there,
    /// then appended, zeros filling any gap before the position.
    fn write_at(&mut self, buf: &[u8]) -> io::Result<usize> {
        let pos = self.position()?;
        pos.checked_add(buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let data = Arc::make_mut(&mut self.data);
        if data.len() < pos {
            data.resize(pos, 0);
        }
        let over = buf.len().min(data.len() - pos);
        data[pos..pos + over].copy_from_slice(&buf[..over]);
        data.extend_from_slice(&buf[over..]);
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
}

impl AsyncRead for SnapshotBytes {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let start = this.position().unwrap_or(usize::MAX).min(this.data.len());
        let n = buf.remaining().min(this.data.len() - start);
        buf.put_slice(&this.data[start..start + n]);
        this.pos = (start + n) as u64;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SnapshotBytes {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.get_mut().write_at(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for SnapshotBytes {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        let (base, offset) = match position {
            SeekFrom::Start(at) => {
                this.pos = at;
                return Ok(());
            }
            SeekFrom::End(offset) => (this.data.len() as u64, offset),
            SeekFrom::Current(offset) => (this.pos, offset),
        };
        this.pos = base.checked_add_signed(offset).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )
        })?;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_and_seeks_like_a_cursor_without_copying_the_shared_bytes() {
        let data = Arc::new((0u8..=255).collect::<Vec<u8>>());
        let mut a = SnapshotBytes::shared(data.clone());
        let b = a.clone();
        assert!(
            Arc::ptr_eq(&b.clone().into_inner(), &data),
            "a clone shares"
        );
        a.seek(SeekFrom::Start(250)).await.expect("seek");
        let mut tail = Vec::new();
        a.read_to_end(&mut tail).await.expect("read");
        assert_eq!(tail, vec![250, 251, 252, 253, 254, 255]);
        assert_eq!(a.seek(SeekFrom::End(-2)).await.expect("seek"), 254);
        assert_eq!(a.seek(SeekFrom::Current(1)).await.expect("seek"), 255);
        assert!(a.seek(SeekFrom::Current(-300)).await.is_err());
        a.seek(SeekFrom::Start(1_000)).await.expect("past the end");
        assert_eq!(
            a.read(&mut [0u8; 4]).await.expect("read"),
            0,
            "nothing there"
        );
    }

    #[tokio::test]
    async fn writes_like_a_cursor_and_leave_other_holders_unchanged() {
        let data = Arc::new(vec![1u8, 2, 3]);
        let mut w = SnapshotBytes::shared(data.clone());
        w.seek(SeekFrom::Start(1)).await.expect("seek");
        w.write_all(&[9, 9, 9])
            .await
            .expect("over and past the end");
        w.seek(SeekFrom::Start(6)).await.expect("seek");
        w.write_all(&[7]).await.expect("after a gap");
        assert_eq!(*w.into_inner(), vec![1, 9, 9, 9, 0, 0, 7]);
        assert_eq!(*data, vec![1, 2, 3], "the shared bytes did not change");
        let mut fresh = SnapshotBytes::default();
        fresh.write_all(b"abc").await.expect("write");
        fresh.write_all(b"de").await.expect("write");
        assert_eq!(fresh.into_inner().as_slice(), b"abcde");
    }
}
